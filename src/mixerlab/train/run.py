"""Run one training job from a config file plus overrides (what ``mixerlab train`` calls)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mixerlab.tasks.base import Task, create_task
from mixerlab.train.config import (
    RunConfig,
    apply_overrides,
    from_dict,
    load_mapping,
    parse_assignments,
    to_dict,
)
from mixerlab.train.trainer import Trainer


def build_run_config(
    path: str | None, overrides: dict[str, Any] | None = None, assignments: list[str] | None = None
) -> RunConfig:
    """The run config from ``path`` (YAML/JSON), then ``overrides`` and ``key=value`` assignments."""
    data = apply_overrides(load_mapping(path), {**(overrides or {}), **parse_assignments(assignments)})
    if "name" not in (data.get("model") or {}):
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
    checkpoint: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and return a JSON-ready summary: config, status, metrics, steps, throughput."""
    import torch

    from mixerlab.bench.costs import count_parameters

    config = build_run_config(path, overrides, assignments)
    trainer = Trainer(config, checkpoint_path=checkpoint, progress=progress, log=log)
    log(
        f"training {config.model.name} ({count_parameters(trainer.model):,} parameters, "
        f"{torch.get_num_threads()} threads) on {config.task.name}"
    )
    result = trainer.fit()
    return {
        "config": to_dict(config),
        "task_options": trainer.task.options,
        "status": result.status,
        "message": result.message,
        "metrics": None if result.metrics is None else result.metrics.to_dict(),
        "steps": result.steps,
        "epochs": result.epochs,
        "train_seconds": round(result.train_seconds, 3),
        "tokens_per_s": round(result.tokens_per_second, 1),
    }
