"""``mixerlab list``: what is registered, one line each (``--markdown`` for the README table)."""

from __future__ import annotations

from typing import Annotated

import typer

from mixerlab.cli.app import app


@app.command(name="list")
def list_(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="Only one kind: mixers, channel_mixers, norms, stems, heads, models, tasks, "
            "objectives, methods, transforms, baselines."
        ),
    ] = None,
    markdown: Annotated[bool, typer.Option(help="Print the README tables of blocks.")] = False,
    update_readme: Annotated[
        str | None, typer.Option(help="Rewrite the blocks section of this README file in place.")
    ] = None,
) -> None:
    """List everything registered: blocks, stems, heads, models, tasks, methods, transforms, baselines."""
    from mixerlab.bench import listing as lst

    if update_readme is not None:
        changed = lst.update_readme(update_readme)
        typer.echo(f"{update_readme}: {'updated' if changed else 'already up to date'}")
        return
    typer.echo(lst.markdown_table() if markdown else lst.listing(kind))
