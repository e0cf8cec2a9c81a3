"""``mixerlab train``: one model on one task, from flags or a YAML config, into the results store."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from mixerlab.bench.defaults import DEFAULT_SWEEP
from mixerlab.cli.app import app
from mixerlab.errors import ConfigError

# The defaults shown in --help: the first run of the default comparison (see train/run.py).
_TRAIN, _MODEL = DEFAULT_SWEEP["train"], DEFAULT_SWEEP["model"]
_MIXER = DEFAULT_SWEEP["models"][0]
_MIXER = json.dumps(_MIXER) if isinstance(_MIXER, dict) else _MIXER

RESUME = "run the same command again to resume from the last checkpoint"


@app.command()
def train(
    config: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON run config (task, model, train); default: the first run of `compare`."),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help=f"Registered task name (default: {DEFAULT_SWEEP['task']['name']}).")
    ] = None,
    mixer: Annotated[
        str | None, typer.Option(help=f"Token mixer name, or a JSON spec dict (default: {_MIXER}).")
    ] = None,
    dim: Annotated[
        int | None, typer.Option(help=f"Model width (default: {DEFAULT_SWEEP['widths'][0]}).")
    ] = None,
    depth: Annotated[int | None, typer.Option(help=f"Number of blocks (default: {_MODEL['depth']}).")] = None,
    lr: Annotated[
        float | None, typer.Option(help=f"Peak learning rate (default: {DEFAULT_SWEEP['lrs'][0]:g}).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Passes over the training set (default: {_TRAIN['epochs']}).")
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help=f"Budget in optimiser steps; the schedule ends there (default: {_TRAIN['max_steps']})."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help=f"Seed of initialisation and batch order (default: {DEFAULT_SWEEP['seeds'][0]})."),
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
            help="Checkpoint file; resumes if it exists (default: <store folder>/checkpoints/<run key>.pt)."
        ),
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="Load a pickle checkpoint of an earlier mixerlab (it can run code: only a file you trust).",
        ),
    ] = False,
    output: Annotated[Path | None, typer.Option(help="Write the final result as JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    threads: Annotated[
        int, typer.Option(help="torch threads; 1 suits the testbed's small models and a shared machine.")
    ] = 1,
) -> None:
    """Train one model on one task, print progress and a results table, and store the result.

    Ctrl-C once stops at the next step (the last checkpoint stays); twice stops at once.
    Under `torchrun --nproc_per_node=N mixerlab train ...` the run is data-parallel over N
    processes (train.batch_size is the global batch); rank 0 alone prints and writes.
    """
    from mixerlab.bench.store import display_url
    from mixerlab.cli._table import print_leaderboard
    from mixerlab.train.checkpoint import trusting_pickle_checkpoints
    from mixerlab.train.distributed import is_writer_process, leave
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
        trust = trusting_pickle_checkpoints() if trust_checkpoint else contextlib.nullcontext()
        with stop_on_interrupt() as request, trust:
            row, stored_before = train_command(
                str(config) if config else None,
                {k: v for k, v in overrides.items() if v is not None},
                set_ or [],
                checkpoint=str(checkpoint) if checkpoint else None,
                store=None if no_store else store,
                progress=progress,
                log=typer.echo,
                should_stop=request,
                threads=threads,
            )
    except Interrupted:
        typer.echo(f"interrupted: {RESUME}", err=True)
        raise typer.Exit(code=130) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted again: stopped at once; {RESUME}", err=True)
        raise typer.Exit(code=130) from None
    finally:
        leave()
    if not is_writer_process():
        return
    if stored_before:
        typer.echo(
            f"this run is already in {display_url(store)} (use --no-store to train it again); its result:"
        )
    print_leaderboard("train", [row])
    if not no_store:
        where = display_url(store)
        typer.echo(f"stored in {where} (sweep 'train'): `mixerlab report --store {where} --sweep train`")
    if output is not None:
        output.write_text(json.dumps(result_summary(row), indent=2))


def _spec(text: str | None):
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError("train", "mixer", text, f"expected a mixer name or a JSON object ({err})") from None
