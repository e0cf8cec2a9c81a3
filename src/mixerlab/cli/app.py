"""The one Typer application; each ``cli/<command>.py`` adds its command to it with ``@app.command()``."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mixerlab",
    help="Train and compare token mixers, channel mixers and models; measure their cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """mixerlab: token mixers, channel mixers, norms, and a testbed that compares them."""
