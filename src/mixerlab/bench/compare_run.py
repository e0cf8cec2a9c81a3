"""One run of a comparison: train a model (or fit a baseline), measure its costs, return its row.

:func:`run_one` is what every executor calls, in whatever process it runs the run in; the row it
returns is what the results store keeps (config, seed, metric per slice, costs, versions).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mixerlab.bench.compare_plan import Log
from mixerlab.registry import BASELINES
from mixerlab.train.config import RunConfig, from_dict, to_dict
from mixerlab.train.interrupts import Interrupted


def run_one(
    config: dict[str, Any],
    label: str,
    sweep: str,
    checkpoint_dir: str | None,
    axes: dict[str, Any] | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
    log: Log | None = None,
    log_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train (or fit, for a baseline) one run and measure its costs; returns the store row.

    The checkpoint is ``checkpoint``, else ``<checkpoint_dir>/<run key>.pt``, else none. The
    run's loggers (``train.loggers``) write under ``log_dir``, else the folder that holds
    ``checkpoint_dir`` (a sweep's ``out_dir``), else ``mixerlab-runs``.
    ``should_stop`` is polled before every step; when it turns true the run raises
    :class:`~mixerlab.train.interrupts.Interrupted` and its last checkpoint stays.
    """
    run = from_dict(RunConfig, config, "run")
    key = run.key()
    if run.model.name in BASELINES:
        task, objective, part = _fit_baseline(run)
    else:
        if checkpoint is None and checkpoint_dir is not None:
            checkpoint = Path(checkpoint_dir) / f"{key}.pt"
        if log_dir is None:
            log_dir = Path(checkpoint_dir).parent if checkpoint_dir is not None else "mixerlab-runs"
        task, objective, part = _train_run(
            run,
            checkpoint,
            should_stop=should_stop,
            progress=progress,
            log=log,
            log_dir=log_dir,
            log_group=sweep,
        )
    metrics = part.pop("metrics")
    return {
        "run_key": key,
        "sweep": sweep,
        "task": run.task.name,
        "kind": task.kind,
        "model": run.model.name,
        "mixer": label,
        "seed": run.train.seed,
        "metric_name": objective.metric,
        "metric": None if metrics is None else metrics.value,
        "higher_is_better": objective.higher_is_better,
        "config": {**to_dict(run), "task_options": task.options},
        "axes": axes or {},
        "slices": None if metrics is None else metrics.slices,
        **part,
    }


def _fit_baseline(run: RunConfig) -> tuple[Any, Any, dict[str, Any]]:
    """Fit a baseline of another field on the task's training split; score it with the same objective."""
    from mixerlab.bench.costs import environment
    from mixerlab.train.evaluate import aggregate, objective_of
    from mixerlab.train.trainer import build_task

    task = build_task(run)
    objective = objective_of(task, run.objective)
    baseline = BASELINES.create(run.model.name, **run.model.options)
    train, val = task.train_data(run.task.seed), task.val_data(run.task.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    baseline.fit(task, train, val)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    nums, dens, slices = [], [], {}
    for part in task.eval_data(run.task.seed):
        num, den = objective.score(baseline.predict(task, part).float(), part.targets)
        nums.append(num)
        dens.append(den)
        for name, labels in part.slices.items():
            slices.setdefault(name, []).append(labels)
    metrics = aggregate(
        objective, torch.cat(nums), torch.cat(dens), {k: torch.cat(v) for k, v in slices.items()}
    )
    env = environment("cpu")
    return (
        task,
        objective,
        {
            "metrics": metrics,
            "dim": None,
            "lr": None,
            "status": "finished",
            "examples_per_s": len(train) / seconds if seconds > 0 else None,
            "train_seconds": seconds,
            "train_cpu_seconds": cpu,
            "steps": 0,
            "epochs": 0,
            "device": env["device"],
            "message": "",
            "history": [],
            "versions": env,
            "params": baseline.num_parameters(),
        },
    )


def _train_run(
    run: RunConfig,
    checkpoint: str | os.PathLike | None,
    *,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
    log: Log | None = None,
    log_dir: str | os.PathLike = "mixerlab-runs",
    log_group: str = "train",
) -> tuple[Any, Any, dict[str, Any]]:
    """Train one model; its task, objective and the run-specific columns of its row.

    The run's loggers get its costs and final metric, then are closed.
    """
    from mixerlab.bench.costs import count_parameters, environment, measure_costs
    from mixerlab.train.trainer import Trainer

    trainer = Trainer(
        run,
        checkpoint_path=checkpoint,
        progress=progress,
        log=log,
        should_stop=should_stop,
        log_dir=log_dir,
        log_group=log_group,
    )
    if log is not None:
        _, steps, _ = trainer.budget()
        log(
            f"training {run.model.name} ({count_parameters(trainer.model):,} parameters, "
            f"{torch.get_num_threads()} threads) on {run.task.name} for {steps} steps"
        )
    try:
        result = trainer.fit()
        example = trainer.train_data.batch(slice(0, run.train.batch_size), trainer.device)["inputs"]
        costs = measure_costs(trainer.model, task=trainer.task, inputs=example, device=trainer.device)
        if trainer.loggers:
            final = {f"cost/{k}": v for k, v in costs.items() if isinstance(v, int | float)}
            if result.metrics is not None:
                final[f"final/{result.metrics.name}"] = result.metrics.value
            final["final/tokens_per_s"] = result.tokens_per_second
            trainer.loggers.log_metrics(final, result.steps)
    except BaseException as err:
        trainer.close("interrupted" if isinstance(err, Interrupted | KeyboardInterrupt) else "failed")
        raise
    trainer.close(result.status)
    env = environment(trainer.device)
    # What transforms reported (bytes, sparsity) and each sub-network / exit of a method, kept with
    # the epochs so the report and later analysis can read them.
    history = result.history + ([{"transforms": result.transforms}] if result.transforms else [])
    history += [{"variants": result.variants}] if result.variants else []
    return (
        trainer.task,
        trainer.objective,
        {
            "metrics": result.metrics,
            "dim": run.model.dim,
            "lr": run.train.lr,
            "status": result.status,
            "tokens_per_s": result.tokens_per_second,
            "examples_per_s": result.examples_per_second,
            "train_seconds": result.train_seconds,
            "train_cpu_seconds": result.train_cpu_seconds,
            "steps": result.steps,
            "epochs": result.epochs,
            "device": env["device"],
            "message": result.message,
            "history": history,
            "versions": env,
            **costs,
        },
    )
