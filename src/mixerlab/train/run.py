"""Run one training job from a config file plus overrides (what ``mixerlab train`` calls).

Without a config file the run is the first one of the default comparison
(:data:`mixerlab.bench.defaults.DEFAULT_SWEEP`: same task, budget and model setup), so ``train``
and ``compare`` agree on what a run is. The result goes to the same results store as a sweep's,
as the same row (sweep name ``train``), so ``mixerlab report`` shows it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixerlab.errors import check_positive_int
from mixerlab.tasks.base import Task, create_task
from mixerlab.train.config import (
    RunConfig,
    apply_overrides,
    from_dict,
    load_mapping,
    parse_assignments,
    to_dict,
)

DEFAULT_STORE = "mixerlab-runs/results.sqlite"
SWEEP_NAME = "train"


def default_run() -> dict[str, Any]:
    """The first run of the default comparison, as a config dict."""
    from mixerlab.bench.compare import model_lrs
    from mixerlab.bench.defaults import DEFAULT_SWEEP

    sweep = copy.deepcopy(DEFAULT_SWEEP)
    # A per-model "lr" in the spec is the sweep's, routed to train.lr.
    mixer, lrs = model_lrs(sweep["models"][0], sweep["lrs"])
    model = {**sweep.get("model", {}), "mixer": mixer, "dim": sweep["widths"][0]}
    train = {**sweep.get("train", {}), "lr": lrs[0], "seed": sweep["seeds"][0]}
    return {"task": sweep["task"], "model": model, "train": train}


def build_run_config(
    path: str | None, overrides: dict[str, Any] | None = None, assignments: list[str] | None = None
) -> RunConfig:
    """The run config from ``path`` (YAML/JSON, else :func:`default_run`), then overrides.

    ``overrides`` and ``key=value`` ``assignments`` are dotted paths. When they name another task
    than the default run's, that task starts from its own defaults and the model for its kind.
    """
    changes = {**(overrides or {}), **parse_assignments(assignments)}
    if path:
        data = load_mapping(path)
    else:
        data = default_run()
        if changes.get("task.name", data["task"]["name"]) != data["task"]["name"]:
            # Another task: its own options, the model for its kind, no target in another metric.
            data["task"] = {"name": changes["task.name"]}
            data["model"].pop("name", None)
            data["train"].pop("target_metric", None)
    data = apply_overrides(data, changes)
    if (data.get("model") or {}).get("name", "auto") == "auto":
        # No model named: the one for the task's kind and inputs (an LM for token tasks).
        task_data = data.get("task") or {}
        task = create_task(task_data.get("name", "mqar"), **(task_data.get("options") or {}))
        data = apply_overrides(data, {"model.name": default_model(task)})
    return from_dict(RunConfig, data, "run")


def default_model(task: Task) -> str:
    """The named model a task of this kind and input is trained with when the config names none."""
    io = task.model_io()
    if task.kind == "next_token":
        return "lm"
    if task.kind == "forecast":
        return "forecaster"
    return "image_classifier" if "image_size" in io else "tabular"


def train_command(
    path: str | None,
    overrides: dict[str, Any],
    assignments: list[str],
    *,
    checkpoint: str | os.PathLike | None = None,
    store: str | os.PathLike | None = DEFAULT_STORE,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = 1,
) -> tuple[dict[str, Any], bool]:
    """Train one run and write its row to ``store`` (None: no store); returns (row, was stored before).

    A run already in the store is not trained again: its stored row comes back. Without an
    explicit ``checkpoint`` the run checkpoints to ``<store folder>/checkpoints/<run key>.pt``
    (removed once the row is written), so an interrupted ``train`` resumes.

    ``threads`` sets torch's threads (None: torch's choice). One is the default, as in a sweep's
    workers: the testbed's small models gain nothing from more, and on a busy machine two
    spinning threads per process ran 13x slower than one (measured on 2 shared cores).

    Under ``torchrun`` every rank trains its share (:mod:`mixerlab.train.distributed`); rank 0
    alone reads and writes the store, checkpoints and logs, and tells the others whether the run
    is stored already. The row is the same on every rank.
    """
    import torch

    from mixerlab.bench.compare import mixer_labels, run_one
    from mixerlab.bench.store import ResultStore, check_store
    from mixerlab.train.distributed import backend_for, from_environment, from_writer

    config = build_run_config(path, overrides, assignments)
    if threads is not None:
        check_positive_int("train", "threads", threads)
        torch.set_num_threads(threads)
    ctx = from_environment(backend_for(config.train.device))
    if not ctx.is_writer:
        progress, log = False, None
    key = config.key()
    results = None
    if store is not None and ctx.is_writer:
        check_store(store, must_exist=False, owner="train")
        results = ResultStore(store)
    stored = from_writer(None if results is None else results.get(key), ctx)
    if stored is not None:
        if results is not None:
            results.close()
        return stored, True
    own_checkpoint = checkpoint is None and store is not None and "://" not in str(store)
    if own_checkpoint:
        checkpoint = Path(store).parent / "checkpoints" / f"{key}.pt"
    label = mixer_labels([config.model.mixer])[0]
    axes = {
        "model.mixer": label,
        "model.dim": config.model.dim,
        "train.lr": config.train.lr,
        "train.seed": config.train.seed,
    }
    try:
        row = run_one(
            to_dict(config),
            label,
            SWEEP_NAME,
            None,
            axes,
            checkpoint=checkpoint,
            should_stop=should_stop,
            progress=progress,
            log=log,
            # Loggers' default folders beside a local store (else the default mixerlab-runs).
            log_dir=Path(store).parent if store is not None and "://" not in str(store) else None,
        )
        if results is not None:  # rank 0 only
            results.write(row)
            if own_checkpoint:
                Path(checkpoint).unlink(missing_ok=True)
    finally:
        if results is not None:
            results.close()
    return row, False


def result_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON ``train --output`` writes: config, status, metrics (with slices), steps, throughput."""
    return {
        "run_key": row["run_key"],
        "config": {k: v for k, v in row["config"].items() if k != "task_options"},
        "task_options": row["config"].get("task_options"),
        "status": row["status"],
        "message": row.get("message", ""),
        "metrics": None
        if row["metric"] is None
        else {
            "name": row["metric_name"],
            "value": row["metric"],
            "higher_is_better": row["higher_is_better"],
            "slices": row.get("slices") or {},
        },
        "steps": row["steps"],
        "epochs": row["epochs"],
        "train_seconds": row["train_seconds"],
        "tokens_per_s": row.get("tokens_per_s"),
        "params": row.get("params"),
        "state_size": row.get("state_size_eval"),
    }
