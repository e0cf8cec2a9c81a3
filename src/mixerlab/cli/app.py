"""The one Typer application; each ``cli/<command>.py`` adds its command to it with ``@app.command()``.

Errors a user can fix (:class:`~mixerlab.errors.ConfigError`, a malformed option) end as one line
on stderr and exit code 2; any other exception as one line and exit code 1; Ctrl-C as exit code
130. ``--debug`` (or ``MIXERLAB_DEBUG=1``) shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mixerlab.errors import ConfigError

DEBUG_ENV = "MIXERLAB_DEBUG"


def debugging(ctx: Any = None) -> bool:
    """Whether tracebacks were asked for (``--debug`` on this invocation, or the environment)."""
    while ctx is not None and ctx.parent is not None:
        ctx = ctx.parent
    if ctx is not None and ctx.params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


class _Group(TyperGroup):
    """The command group whose ``invoke`` turns exceptions into one-line messages."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, BrokenPipeError):
            raise  # Typer's own handling: exit codes, 130 for Ctrl-C, quiet on a closed pipe
        except ConfigError as err:
            if debugging(ctx):
                raise
            raise fail(str(err)) from None
        except typer.TyperException as err:  # a malformed command line (e.g. --workers abc)
            if debugging(ctx) or not hasattr(err, "format_message"):
                raise
            code = getattr(err, "exit_code", 2)
            raise fail(" ".join(err.format_message().split()), code=code) from None
        except Exception as err:
            if debugging(ctx):
                raise
            text = " ".join(str(err).split()) or "(no message)"
            raise fail(
                f"{type(err).__name__}: {text} (run again with --debug for the traceback)", code=1
            ) from None


app = typer.Typer(
    name="mixerlab",
    help="Train and compare token mixers, channel mixers and models; measure their cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
)


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Show the full traceback of an error (or set {DEBUG_ENV}=1)."),
    ] = False,
) -> None:
    """mixerlab: token mixers, channel mixers, norms, and a testbed that compares them."""
