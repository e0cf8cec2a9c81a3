"""``mixerlab train``: one model on one task, from flags or a YAML config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mixerlab.cli.app import app
from mixerlab.errors import ConfigError


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="YAML/JSON run config (task, model, train).")] = None,
    task: Annotated[str | None, typer.Option(help="Registered task name, e.g. mqar.")] = None,
    mixer: Annotated[str | None, typer.Option(help="Token mixer name, or a JSON spec dict.")] = None,
    dim: Annotated[int | None, typer.Option(help="Model width.")] = None,
    depth: Annotated[int | None, typer.Option(help="Number of blocks.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and batch order.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override any field: --set task.options.num_kv_pairs=[4,8] --set train.bf16=true"
        ),
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint file; resumes if it exists.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the final result as JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train one model on one task and print progress and the final metrics."""
    from mixerlab.train.run import train_command

    overrides = {
        "task.name": task,
        "model.mixer": _spec(mixer),
        "model.dim": dim,
        "model.depth": depth,
        "train.lr": lr,
        "train.epochs": epochs,
        "train.seed": seed,
    }
    try:
        result = train_command(
            str(config) if config else None,
            {k: v for k, v in overrides.items() if v is not None},
            set_ or [],
            checkpoint=str(checkpoint) if checkpoint else None,
            progress=progress,
            log=typer.echo,
        )
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from err
    typer.echo(json.dumps(result, indent=2))
    if output is not None:
        output.write_text(json.dumps(result, indent=2))


def _spec(text: str | None):
    if text is None or not text.lstrip().startswith("{"):
        return text
    return json.loads(text)
