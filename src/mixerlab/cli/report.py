"""``mixerlab report``: the HTML page and PNG plots from a results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixerlab.cli.app import app


@app.command()
def report(
    store: Annotated[str, typer.Option(help="Database URL or SQLite path.")] = "mixerlab-runs/results.sqlite",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <store folder>/report).")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only this sweep.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    group_by: Annotated[
        str | None,
        typer.Option(help="Comma-separated sweep axes to group by, e.g. model.mixer,model.options.mixing."),
    ] = None,
) -> None:
    """Write report.html (self-contained) and PNG plots from the results store; print the leaderboard."""
    from mixerlab.bench.report import load_rows, write_report
    from mixerlab.cli._table import print_leaderboard, print_report_location

    if out is None:
        out = Path(store).parent / "report" if "://" not in store else Path("mixerlab-report")
    axes = [a.strip() for a in group_by.split(",") if a.strip()] if group_by else None
    written = write_report(store, out, sweep=sweep, task=task, group_by=axes, log=typer.echo)
    rows = load_rows(store, sweep=sweep, task=written["task"])
    print_leaderboard(f"task {written['task']!r}", rows, axes)
    print_report_location(written["html"])
