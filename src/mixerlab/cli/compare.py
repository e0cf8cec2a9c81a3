"""``mixerlab compare``: a sweep of models on a task into the results store, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixerlab.cli.app import app
from mixerlab.errors import ConfigError


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
    workers: Annotated[int, typer.Option(help="Parallel worker processes (one thread each).")] = 2,
    mixers: Annotated[str | None, typer.Option(help="Comma-separated token mixers to use instead.")] = None,
    widths: Annotated[str | None, typer.Option(help="Comma-separated widths, e.g. 32,64.")] = None,
    lrs: Annotated[str | None, typer.Option(help="Comma-separated learning rates.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a sweep field: --set train.epochs=4")
    ] = None,
    tiny: Annotated[bool, typer.Option(help="A seconds-long sweep to try the pipeline.")] = False,
    report: Annotated[bool, typer.Option(help="Write the HTML/PNG report at the end.")] = True,
) -> None:
    """Run a sweep (mixers x widths x lrs x seeds); skips runs already in the store."""
    from mixerlab.bench.compare import compare_command

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
        )
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from err
    if summary.failed:
        raise typer.Exit(code=1)
