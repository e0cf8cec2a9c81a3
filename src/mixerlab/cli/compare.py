"""``mixerlab compare``: a sweep of models on a task into the results store, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixerlab.cli.app import app

RESUME = (
    "run the same command again to resume (finished runs are skipped, "
    "the others continue from their last checkpoint)"
)


@app.command()
def compare(
    config: Annotated[
        Path | None, typer.Option(help="YAML/JSON sweep config; default: the MQAR comparison.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the store, checkpoints and report.")] = Path(
        "mixerlab-runs"
    ),
    store: Annotated[
        str | None, typer.Option(help="Database URL or SQLite path (default: <out>/results.sqlite).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Parallel runs: worker processes, or the CPUs of a local Ray instance.")
    ] = 2,
    executor: Annotated[
        str, typer.Option(help="Where runs run: local (process pool) or ray (Ray tasks; the ray extra).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray instance)."),
    ] = None,
    mixers: Annotated[str | None, typer.Option(help="Comma-separated token mixers to use instead.")] = None,
    widths: Annotated[str | None, typer.Option(help="Comma-separated widths, e.g. 32,64.")] = None,
    lrs: Annotated[str | None, typer.Option(help="Comma-separated learning rates.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a sweep field: --set train.max_steps=200")
    ] = None,
    tiny: Annotated[bool, typer.Option(help="A seconds-long sweep to try the pipeline.")] = False,
    report: Annotated[bool, typer.Option(help="Write the HTML/PNG report at the end.")] = True,
) -> None:
    """Run a sweep (mixers x widths x lrs x seeds); skips runs already in the store.

    Ctrl-C once stops cleanly within seconds (finished runs stay in the store, running ones keep
    their last checkpoint; run the same command to resume); twice stops at once.
    """
    from mixerlab.bench.compare import compare_command
    from mixerlab.bench.report import load_rows
    from mixerlab.cli._table import print_leaderboard, print_report_location

    try:
        summary = compare_command(
            str(config) if config else None,
            out=str(out),
            store=store,
            workers=workers,
            lists={"models": mixers, "widths": widths, "lrs": lrs, "seeds": seeds},
            assignments=set_ or [],
            tiny=tiny,
            report=report,
            log=typer.echo,
            executor=executor,
            ray_address=ray_address,
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted again: stopped at once; {RESUME}", err=True)
        raise typer.Exit(code=130) from None
    if summary.interrupted:
        stored = summary.skipped_done + len(summary.finished)
        from mixerlab.bench.store import display_url

        where = display_url(summary.store_url)
        typer.echo(f"interrupted: {stored} finished run(s) in {where}; {RESUME}", err=True)
        raise typer.Exit(code=130)
    if summary.finished or summary.skipped_done:
        print_leaderboard(f"sweep {summary.sweep!r}", load_rows(summary.store_url, sweep=summary.sweep))
    if summary.report is not None:
        print_report_location(summary.report["html"])
    if summary.failed:
        raise typer.Exit(code=1)
