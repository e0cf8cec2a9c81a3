"""``mixerlab train``: one model on one task, from flags or a YAML config, into the results store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mixerlab.cli.app import app
from mixerlab.errors import ConfigError

RESUME = "run the same command again to resume from the last checkpoint"


@app.command()
def train(
    config: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON run config (task, model, train); default: the first run of `compare`."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Registered task name [default: mqar].")] = None,
    mixer: Annotated[
        str | None, typer.Option(help="Token mixer name, or a JSON spec dict [default: attention].")
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Model width [default: 32].")] = None,
    depth: Annotated[int | None, typer.Option(help="Number of blocks [default: 2].")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate [default: 3e-3].")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set [default: 10].")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Budget in optimiser steps; the schedule ends there [default: 400].")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of initialisation and batch order [default: 0].")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override any field: --set task.options.num_kv_pairs=[4,8] --set train.bf16=true"
        ),
    ] = None,
    store: Annotated[
        str, typer.Option(help="Results store (SQLite path or database URL) the run is written to.")
    ] = "mixerlab-runs/results.sqlite",
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not write the result to a store.")] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint file; resumes if it exists [default: <store folder>/checkpoints/<run>.pt]."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the final result as JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train one model on one task, print progress and a results table, and store the result.

    Ctrl-C once stops at the next step (the last checkpoint stays); twice stops at once.
    """
    from mixerlab.cli._table import print_leaderboard
    from mixerlab.train.interrupts import Interrupted, stop_on_interrupt
    from mixerlab.train.run import result_summary, train_command

    overrides = {
        "task.name": task,
        "model.mixer": _spec(mixer),
        "model.dim": dim,
        "model.depth": depth,
        "train.lr": lr,
        "train.epochs": epochs,
        "train.max_steps": max_steps,
        "train.seed": seed,
    }
    try:
        with stop_on_interrupt() as request:
            row, stored_before = train_command(
                str(config) if config else None,
                {k: v for k, v in overrides.items() if v is not None},
                set_ or [],
                checkpoint=str(checkpoint) if checkpoint else None,
                store=None if no_store else store,
                progress=progress,
                log=typer.echo,
                should_stop=request,
            )
    except Interrupted:
        typer.echo(f"interrupted: {RESUME}", err=True)
        raise typer.Exit(code=130) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted again: stopped at once; {RESUME}", err=True)
        raise typer.Exit(code=130) from None
    if stored_before:
        typer.echo(f"this run is already in {store} (use --no-store to train it again); its result:")
    print_leaderboard("train", [row])
    if not no_store:
        typer.echo(f"stored in {store} (sweep 'train'): `mixerlab report --store {store} --sweep train`")
    if output is not None:
        output.write_text(json.dumps(result_summary(row), indent=2))


def _spec(text: str | None):
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError("train", "mixer", text, f"expected a mixer name or a JSON object ({err})") from None
