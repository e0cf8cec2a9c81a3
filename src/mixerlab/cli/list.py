"""``mixerlab list``: what is registered, one line each (``--markdown`` for the README table)."""

from __future__ import annotations

from typing import Annotated

import typer

from mixerlab.cli.app import app


@app.command(name="list")
def list_(
    kind: Annotated[
        str | None, typer.Argument(help="Only one kind: mixers, channel_mixers, norms, models, tasks.")
    ] = None,
    markdown: Annotated[bool, typer.Option(help="Print the README table of token mixers.")] = False,
) -> None:
    """List registered token mixers, channel mixers, norms, models and tasks."""
    from mixerlab.bench.listing import listing, markdown_table

    typer.echo(markdown_table() if markdown else listing(kind))
