"""Compare models side by side: a grid over any config field, on one task.

A sweep is a base run config plus axes: ``models`` (token-mixer specs), ``widths``, ``lrs`` and
``seeds`` are the usual four, and ``grid`` adds any other as ``{dotted.path: [values]}`` over the
task, model, method, transforms, objective and train fields (``{"model.mixing": ["noncausal",
"2d"], "method.name": ["standard", "gradient_noise"]}``). A dict value at a path that holds a dict
is merged into it, so ``{"model": [{"name": "tabular"}, {"name": "hist_gradient_boosting"}]}``
puts a baseline of another field (:mod:`mixerlab.bench.baselines`) in the same table; a baseline
run keeps only its model's name and options and its seed.

Every run trains in a worker process (``ProcessPoolExecutor``, spawn context, one thread each when
there are several workers), or as a Ray task (``executor="ray"``,
:mod:`mixerlab.bench.ray_executor`), and its result is written to the results store as soon as it
finishes. A run already in the store is skipped, so re-running an interrupted sweep only does
what is missing; a run killed mid-way resumes from its last per-epoch checkpoint.

Interrupts: workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group) and die
with the parent (Linux ``PR_SET_PDEATHSIG``), so only the parent decides. The first Ctrl-C sets
an event the workers poll before every step: each running run stops, keeping its checkpoint, no
new run starts, and :func:`compare` returns with ``interrupted`` set. The second Ctrl-C kills the
workers and raises :class:`KeyboardInterrupt` at once.

Fairness: every run sees the same data (the task's data seed), the same budget (epochs, batch
size, schedule), and the same small learning-rate grid; the report takes the best learning rate
per model and shows the spread over seeds. A model spec may name its own learning rates,
``{"name": "gla", "lr": 1e-2}`` (or a list): they replace ``lrs`` for that model only, for mixers
whose best rate lies outside the shared grid; ``--lrs`` on the command line replaces them all.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import difflib
import functools
import itertools
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixerlab.bench import baselines as _baselines  # noqa: F401  (registers the baselines)
from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.layers.spec import split_spec
from mixerlab.registry import BASELINES, TOKEN_MIXERS
from mixerlab.train.config import (
    MethodConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    to_dict,
)
from mixerlab.train.interrupts import Interrupted, stop_on_interrupt

Log = Callable[[str], None]


@dataclass
class SweepConfig:
    """A sweep: ``models`` (token-mixer specs) x ``widths`` x ``lrs`` x ``seeds`` on one task.

    ``model`` and ``train`` are the shared base configs; each run overrides the mixer, ``dim``,
    ``lr`` and ``seed``. If fewer than ``min_models`` of ``models`` are registered, other
    registered token mixers (alphabetically, with their default options) fill the gap.
    """

    name: str = "sweep"
    task: TaskConfig = field(default_factory=TaskConfig)
    models: list[Any] = field(default_factory=lambda: ["attention"])
    widths: list[int] = field(default_factory=lambda: [64])
    lrs: list[float] = field(default_factory=lambda: [1e-3])
    seeds: list[int] = field(default_factory=lambda: [0])
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    transforms: list[dict[str, Any]] = field(default_factory=list)
    objective: str | None = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    min_models: int = 0

    def __post_init__(self) -> None:
        for name in ("models", "widths", "lrs", "seeds"):
            check(
                len(getattr(self, name)) > 0, "sweep", name, getattr(self, name), "expected a non-empty list"
            )
        for lr in self.lrs:
            check(lr > 0 and lr == lr, "sweep", "lrs", lr, "expected learning rates > 0, e.g. 3e-3,1e-2")
        for spec in self.models:
            model_lrs(spec, self.lrs)
        for width in self.widths:
            check_positive_int("sweep", "widths", width)
        roots = ("task", "model", "train", "method", "transforms", "objective")
        for path, values in self.grid.items():
            check(
                path.split(".")[0] in roots,
                "sweep",
                f"grid.{path}",
                values,
                f"a grid path starts with one of {list(roots)}",
            )
            check(
                isinstance(values, list) and len(values) > 0,
                "sweep",
                f"grid.{path}",
                values,
                "expected a non-empty list of values",
            )


@dataclass
class PlannedRun:
    """One run of a sweep with the labels the store and report use."""

    config: RunConfig
    label: str
    key: str
    # The value of every axis of the sweep for this run: {dotted.path: value}.
    axes: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareSummary:
    store_url: str
    planned: int
    skipped_done: int
    finished: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: dict[str, Any] | None = None
    # Stopped by Ctrl-C: finished runs are in the store, the others keep their checkpoints.
    interrupted: bool = False
    sweep: str = ""


def model_lrs(spec: Any, lrs: list[float]) -> tuple[Any, list[float]]:
    """``(spec without its "lr" key, the model's learning rates)``: its own ``lr`` if given, else ``lrs``.

    The ``lr`` key is the sweep's, not the mixer's: it never reaches the mixer's constructor.
    """
    if not (isinstance(spec, dict) and "lr" in spec):
        return spec, list(lrs)
    own = [_as_float(lr) for lr in (spec["lr"] if isinstance(spec["lr"], list) else [spec["lr"]])]
    for lr in own:
        check(
            lr is not None and lr > 0 and lr == lr,
            "sweep",
            f"models.{spec.get('name')}.lr",
            spec["lr"],
            "expected a learning rate > 0 or a non-empty list of them, e.g. 1e-2 or [3e-3, 1e-2]",
        )
    check(len(own) > 0, "sweep", f"models.{spec.get('name')}.lr", spec["lr"], "expected a non-empty list")
    return {k: v for k, v in spec.items() if k != "lr"}, [float(lr) for lr in own if lr is not None]


def _as_float(value: Any) -> float | None:
    # YAML reads "1e-2" as a string; a number or a numeric string is a learning rate.
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load_sweep(data: dict[str, Any] | SweepConfig) -> SweepConfig:
    return from_dict(SweepConfig, data, "sweep")


def resolve_models(sweep: SweepConfig, log: Log) -> tuple[list[Any], list[str]]:
    """The sweep's models, topped up to ``min_models`` with other registered mixers; and the notes.

    A name that is not registered is an error: a typo must not quietly shrink a comparison.
    """
    notes, models = [], []
    for spec in sweep.models:
        name, _ = split_spec(spec, "token mixer")
        if name not in TOKEN_MIXERS:
            close = difflib.get_close_matches(str(name), TOKEN_MIXERS.list(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                "sweep", "models", name, f"{hint}registered token mixers are {TOKEN_MIXERS.list()}"
            )
        models.append(spec)
    if len(models) < sweep.min_models:
        chosen = {split_spec(s, "token mixer")[0] for s in models}
        extra = [n for n in TOKEN_MIXERS.list() if n not in chosen][: sweep.min_models - len(models)]
        if extra:
            notes.append(f"adding registered mixers {extra} to reach {sweep.min_models} models")
        models.extend(extra)
    for note in notes:
        log(note)
    return models, notes


def mixer_labels(models: list[Any]) -> list[str]:
    """A short label per spec: the registry name, plus options when two specs share a name."""
    names = [split_spec(s, "token mixer")[0] for s in models]
    labels = []
    for spec, name in zip(models, names):
        _, options = split_spec(spec, "token mixer")
        if names.count(name) > 1 and options:
            name += "(" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
        labels.append(name)
    return labels


def plan(sweep: SweepConfig, log: Log = print) -> tuple[list[PlannedRun], list[str]]:
    """Expand the sweep into runs, one per point of the grid (equal runs only once).

    Seeds and learning rates are the outer loops, so the first runs already cover every model and
    width (an interrupted sweep gives a first look at all of them); within them the largest
    widths come first, so the slowest runs start early.
    """
    models, notes = resolve_models(sweep, log)
    split = [model_lrs(spec, sweep.lrs) for spec in models]
    models, own_lrs = [spec for spec, _ in split], [lrs for _, lrs in split]
    base = {
        "task": to_dict(sweep.task),
        "model": to_dict(sweep.model),
        "train": to_dict(sweep.train),
        "method": to_dict(sweep.method),
        "transforms": copy.deepcopy(sweep.transforms),
        "objective": sweep.objective,
    }
    grid = list(sweep.grid.items())
    # Only the grid axes that take more than one value (baselines aside) name a run in its label.
    # The task is not part of a label: the report gives each task its own section.
    varying = [
        path
        for path, values in grid
        if len([v for v in values if not _is_baseline(v)]) > 1 and path.split(".")[0] != "task"
    ]
    names = {path: axis_labels(values) for path, values in grid}
    runs, seen = [], set()
    for seed in sweep.seeds:
        # The i-th learning rate of every model in pass i (a model's own list may be shorter).
        for lr_pass in range(max(len(lrs) for lrs in own_lrs)):
            for dim in sorted(sweep.widths, reverse=True):
                for spec, label, lrs in zip(models, mixer_labels(models), own_lrs):
                    if lr_pass >= len(lrs):
                        continue
                    lr = lrs[lr_pass]
                    for index in itertools.product(*(range(len(values)) for _, values in grid)):
                        point = [values[i] for (_, values), i in zip(grid, index)]
                        axes = {
                            "model.mixer": spec,
                            "model.dim": dim,
                            "train.lr": float(lr),
                            "train.seed": seed,
                        }
                        axes.update({path: value for (path, _), value in zip(grid, point)})
                        config = _run_config(base, axes)
                        key = config.key()
                        if key in seen:
                            continue
                        seen.add(key)
                        if config.model.name in BASELINES:
                            full = config.model.name
                        else:
                            # A model that builds its own layers (mixer "none") is named by itself.
                            own = config.model.mixer == "none"
                            extra = [
                                f"{path.split('.')[-1]}={names[path][i]}"
                                for (path, _), i in zip(grid, index)
                                if path in varying and not (own and path == "model")
                            ]
                            head = config.model.name if own else label
                            full = head + (f" [{', '.join(extra)}]" if extra else "")
                        axes["model.mixer"] = label
                        if config.model.name in BASELINES:
                            axes = {k: v for k, v in axes.items() if k not in _NOT_FOR_BASELINES}
                        runs.append(PlannedRun(config, full, key, axes))
    return runs, notes


_NOT_FOR_BASELINES = ("model.mixer", "model.dim", "train.lr")


def _run_config(base: dict[str, Any], axes: dict[str, Any]) -> RunConfig:
    """The base config with each axis value set (a dict value merged into a dict at its path)."""
    data = copy.deepcopy(base)
    for path, value in axes.items():
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(last), dict) and "name" in value:
            current = node[last]
            if current.get("name") != value.get("name"):
                # Another model / method: start from its defaults, not the other's options.
                current = {k: v for k, v in current.items() if k != "options"}
            node[last] = {**current, **copy.deepcopy(value)}
        else:
            node = apply_overrides(data, {path: copy.deepcopy(value)})
            data = node
    config = from_dict(RunConfig, data, "run")
    if config.model.name == "auto":
        # The model for the task's kind and inputs, so one sweep can span tasks of several kinds.
        config.model.name = _default_model(_task_json(config.task))
    if config.model.name in BASELINES:
        # A baseline has no width, depth, mixer or learning rate: one run per (name, options, seed).
        config.model = ModelConfig(name=config.model.name, options=config.model.options)
        config.train = TrainConfig(seed=config.train.seed)
        config.method, config.transforms = MethodConfig(), []
    return config


@functools.lru_cache(maxsize=64)
def _default_model(task_json: str) -> str:
    from mixerlab.tasks.base import create_task
    from mixerlab.train.run import default_model

    task = json.loads(task_json)
    return default_model(create_task(task["name"], **(task.get("options") or {})))


def _is_baseline(value: Any) -> bool:
    return isinstance(value, dict) and value.get("name") in BASELINES


def axis_labels(values: list[Any]) -> dict[Any, str]:
    """A short label per value of one grid axis, keyed by the value's position in ``values``.

    A registered thing (``{"name": ..., "options": ...}``, or a list of them such as a transforms
    chain ``quantize+cast``) is labelled by its name; options (and ``when``) are added only where
    two values would otherwise share a label, and then only those that differ between them.
    """
    plain = [_name_of(v) for v in values]
    labels = {}
    for i, value in enumerate(values):
        same = [values[j] for j in range(len(values)) if plain[j] == plain[i]]
        labels[i] = plain[i] if len(same) == 1 else _with_differences(value, same)
    return labels


def _name_of(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(v["name"] for v in value)
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return str(value)


def _settings(value: Any) -> list[dict[str, Any]]:
    """Each element's flat settings: ``when`` and every option (nested dicts as dotted keys)."""
    items = value if isinstance(value, list) else [value]
    flat = []
    for item in items:
        settings = {k: v for k, v in item.items() if k not in ("name", "options")}
        settings.update(_flatten(item.get("options") or {}))
        flat.append(settings)
    return flat


def _flatten(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _with_differences(value: Any, same: list[Any]) -> str:
    if not isinstance(value, (dict, list)):
        return str(value)
    mine, others = _settings(value), [_settings(v) for v in same]
    parts = []
    for i, (item, settings) in enumerate(zip(value if isinstance(value, list) else [value], mine)):
        keys = sorted(
            k
            for k in {k for o in others if i < len(o) for k in o[i]} | set(settings)
            if any(i >= len(o) or o[i].get(k) != settings.get(k) for o in others)
        )
        shown = ",".join(f"{k.split('.')[-1]}={settings[k]}" for k in keys if k in settings)
        parts.append(item["name"] + (f"({shown})" if shown else ""))
    return "+".join(parts)


def preflight(runs: list[PlannedRun], log: Log) -> tuple[list[PlannedRun], list[str]]:
    """Build each (model, width) once before any run starts.

    A configuration error (options a mixer rejects, a width its heads do not divide) stops the
    sweep with that error; any other failure to build drops the combination with a note, so one
    broken block does not hold up the rest (its error is shown).
    """
    from mixerlab.train.trainer import build_model, build_task

    # A sweep over several tasks builds each model against each task's sizes.
    tasks: dict[str, Any] = {}
    bad: dict[tuple[str, int, str], str] = {}
    built: set[tuple[str, int, str]] = set()
    for run in runs:
        task_key = _task_key(run)
        combo = (run.label, run.config.model.dim, task_key)
        if combo in bad or combo in built or run.config.model.name in BASELINES:
            continue
        if task_key not in tasks:
            tasks[task_key] = build_task(run.config)
        try:
            build_model(run.config.model, tasks[task_key])
            built.add(combo)
        except ConfigError as err:
            where = f"{err.allowed} (model {run.label} at dim={combo[1]})"
            raise ConfigError(err.owner, err.field, err.value, where) from err
        except (TypeError, ValueError) as err:
            bad[combo] = f"skipping {run.label} at dim={combo[1]} on {run.config.task.name}: {err}"
            log(bad[combo])
    keep = [r for r in runs if (r.label, r.config.model.dim, _task_key(r)) not in bad]
    return keep, list(bad.values())


def _task_key(run: PlannedRun) -> str:
    return _task_json(run.config.task)


def _task_json(task: Any) -> str:
    """A task config as canonical JSON: one key per distinct task (and a hashable cache key)."""
    return json.dumps(to_dict(task), sort_keys=True, default=str)


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


# In a worker process: the sweep's stop event (set by the parent on the first Ctrl-C).
_STOP: Any = None


def _init_worker(threads: int, stop: Any, parent: int) -> None:
    global _STOP
    # Ctrl-C reaches every process of the terminal's group; only the parent acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    _STOP = stop
    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the parent dies (Linux), so none is ever orphaned."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _run_safely(
    config, label, sweep, checkpoint_dir, axes=None, should_stop: Callable[[], bool] | None = None
) -> tuple[str, dict | None, str]:
    if should_stop is None and _STOP is not None:
        should_stop = _STOP.is_set
    if should_stop is not None and should_stop():
        return "interrupted", None, ""  # queued before the stop: never started
    try:
        return "ok", run_one(config, label, sweep, checkpoint_dir, axes, should_stop=should_stop), ""
    except Interrupted:
        return "interrupted", None, ""
    except Exception:  # a broken mixer must not take the sweep down; the error is reported
        return "error", None, traceback.format_exc()


# Seconds the workers get to stop after the first Ctrl-C before they are killed.
STOP_GRACE_SECONDS = 10.0


def compare(
    sweep: SweepConfig | dict[str, Any],
    *,
    out_dir: str | os.PathLike = "mixerlab-runs",
    store: str | None = None,
    workers: int = 2,
    report: bool = True,
    log: Log = print,
    executor: str = "local",
    ray_address: str | None = None,
) -> CompareSummary:
    """Run (the missing runs of) ``sweep``, writing each result to the store; then the report.

    ``executor`` runs the runs: ``local`` (this process, or a pool of ``workers`` processes) or
    ``ray`` (a Ray task each, on the cluster at ``ray_address`` or ``RAY_ADDRESS``, else on a
    local Ray instance of ``workers`` CPUs). Either way the rows are written here, as each run
    finishes. Everything is checked before anything is created or run: the sweep, every model
    at every width, the store, the executor. Ctrl-C: see the module docstring.
    """
    from mixerlab.bench.store import ResultStore, check_store, display_url

    run_all = executor_for(executor, ray_address)
    sweep = load_sweep(sweep)
    check(
        isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
        "compare",
        "workers",
        workers,
        "expected an integer >= 1",
    )
    out = Path(out_dir)
    store_path = store or out / "results.sqlite"
    check_store(store_path, must_exist=False, owner="compare")
    started = time.perf_counter()
    runs, notes = plan(sweep, log)
    runs, more_notes = preflight(runs, log)
    out.mkdir(parents=True, exist_ok=True)
    results = ResultStore(store_path)
    done = results.finished_keys()
    todo = [r for r in runs if r.key not in done]
    summary = CompareSummary(results.url, len(runs), len(runs) - len(todo), sweep=sweep.name)
    summary.notes = notes + more_notes
    names = ", ".join(dict.fromkeys(r.config.task.name for r in runs)) or sweep.task.name
    log(
        f"sweep {sweep.name!r}: {len(runs)} runs on {names}, {summary.skipped_done} already in "
        f"{display_url(results.url)}, {len(todo)} to run with {workers} worker(s)"
        + (" on Ray" if executor == "ray" else "")
    )
    checkpoint_dir = str(out / "checkpoints")

    def record(run: PlannedRun, status: str, row: dict | None, error: str) -> None:
        if status == "interrupted":
            return
        if status == "ok" and row is not None:
            results.write(row)
            Path(checkpoint_dir, f"{run.key}.pt").unlink(missing_ok=True)
            summary.finished.append(run.key)
            metric = "n/a" if row["metric"] is None else f"{row['metric']:.4f}"
            where = "" if row["dim"] is None else f" dim={row['dim']} lr={row['lr']:g}"
            log(
                f"[{len(summary.finished) + len(summary.failed)}/{len(todo)}] {run.label}{where} "
                f"seed={row['seed']}: {row['metric_name']}={metric} ({row['status']}, "
                f"{row['train_seconds']:.0f}s)"
            )
        else:
            summary.failed.append((run.key, error))
            log(f"run {run.label} dim={run.config.model.dim} lr={run.config.train.lr:g} failed:\n{error}")

    args = [(to_dict(r.config), r.label, sweep.name, checkpoint_dir, r.axes) for r in todo]
    try:
        summary.interrupted = run_all(todo, args, workers, record) if todo else False
    finally:
        summary.seconds = time.perf_counter() - started
        results.close()
    if report and not summary.interrupted and (summary.finished or summary.skipped_done):
        from mixerlab.bench.report import write_report

        summary.report = write_report(results.url, out / "report", sweep=sweep.name, log=log)
        if sweep.train.loggers:
            _log_report(sweep, summary.report, out)
    return summary


# How a sweep's runs are run: (runs, their run_one arguments, workers, record) -> interrupted.
# ``record(run, status, row, error)`` is called in this process as each run ends.
Executor = Callable[[list[PlannedRun], list[tuple], int, Callable[..., None]], bool]
EXECUTORS = ("local", "ray")


def executor_for(name: str, ray_address: str | None = None) -> Executor:
    """The executor called ``name``; ``ray`` needs the ``ray`` package (the ``ray`` extra)."""
    check(name in EXECUTORS, "compare", "executor", name, f"expected one of {list(EXECUTORS)}")
    check(
        name == "ray" or ray_address is None,
        "compare",
        "ray_address",
        ray_address,
        "only with executor='ray'",
    )
    if name == "local":
        return _run_locally
    import importlib.util

    check(
        importlib.util.find_spec("ray") is not None,
        "compare",
        "executor",
        name,
        "the ray executor needs the 'ray' package: pip install 'mixerlab[ray]'",
    )
    from mixerlab.bench.ray_executor import run_on_ray

    return functools.partial(run_on_ray, address=ray_address)


def _run_locally(
    todo: list[PlannedRun], args: list[tuple], workers: int, record: Callable[..., None]
) -> bool:
    """In this process (one worker or one run), else in a pool of spawned processes."""
    if workers > 1 and len(todo) > 1:
        return _run_in_pool(todo, args, min(workers, len(todo)), record)
    # One thread, as in a worker process: the same run costs the same either way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with stop_on_interrupt() as request:
            for run, a in zip(todo, args):
                record(run, *_run_safely(*a, should_stop=request))
                if request.requested:
                    break
            return request.requested
    finally:
        torch.set_num_threads(threads)


def _log_report(sweep: SweepConfig, report: dict[str, Any], out: Path) -> None:
    """The report's plots to the sweep's loggers, as one run named ``report`` in the sweep's group."""
    from mixerlab.train.loggers import open_loggers

    loggers = open_loggers(sweep.train.loggers, run_name="report", group=sweep.name, root=out)
    try:
        loggers.log_config(to_dict(sweep))
        loggers.log_images(report["pngs"])
    finally:
        loggers.close()


def _run_in_pool(
    todo: list[PlannedRun], args: list[tuple], workers: int, record: Callable[..., None]
) -> bool:
    """Run ``args`` on ``workers`` spawned processes, recording each result; True if interrupted."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    with stop_on_interrupt(on_first=stop.set) as request:
        # Workers start with SIGINT blocked (the mask is inherited through spawn), so a Ctrl-C
        # during their start-up cannot raise in them; a Ctrl-C meanwhile waits for the parent.
        mask = getattr(signal, "pthread_sigmask", lambda how, signals: None)  # POSIX only
        mask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = cf.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(1, stop, os.getpid()),
            )
            futures = {pool.submit(_run_safely, *a): run for run, a in zip(todo, args)}
        finally:
            mask(signal.SIG_UNBLOCK, {signal.SIGINT})
        pending, deadline = set(futures), None
        try:
            while pending:
                finished, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    if future.cancelled():
                        continue
                    try:
                        outcome = future.result()
                    except Exception as err:  # a worker died (killed, out of memory)
                        outcome = ("error", None, f"{type(err).__name__}: {err}")
                    record(futures[future], *outcome)
                if request.requested:
                    for future in pending:
                        future.cancel()
                    pending = {f for f in pending if not f.cancelled()}
                    deadline = deadline or time.monotonic() + STOP_GRACE_SECONDS
                    if time.monotonic() > deadline:
                        _kill_workers()
                        break
        except BaseException:  # the second Ctrl-C: stop at once
            _kill_workers()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        return request.requested


def _kill_workers() -> None:
    for child in multiprocessing.active_children():
        child.kill()
    for child in multiprocessing.active_children():
        child.join(timeout=5)


def build_sweep(
    path: str | None,
    *,
    lists: dict[str, str | None] | None = None,
    assignments: list[str] | None = None,
    tiny: bool = False,
) -> SweepConfig:
    """The sweep from a file (default: :data:`DEFAULT_SWEEP`), comma lists and ``key=value`` overrides."""
    from mixerlab.bench.defaults import DEFAULT_SWEEP, TINY_SWEEP
    from mixerlab.train.config import apply_overrides, load_mapping, parse_assignments, parse_value

    data = load_mapping(path) if path else (TINY_SWEEP if tiny else DEFAULT_SWEEP)
    overrides: dict[str, Any] = {}
    for key, text in (lists or {}).items():
        if text:
            overrides[key] = [parse_value(item) for item in split_list(text)]
    if overrides.get("models"):
        # Explicit mixers replace the default list, so do not top it up with others.
        overrides["min_models"] = 0
    if overrides.get("lrs"):
        # Learning rates given on the command line are every model's, per-model ones included.
        models = overrides.get("models", data.get("models", []))
        overrides["models"] = [model_lrs(spec, [])[0] for spec in models]
    data = apply_overrides(data, {**overrides, **parse_assignments(assignments)})
    return load_sweep(data)


def split_list(text: str) -> list[str]:
    """Split a comma list at the commas outside brackets: ``gla,{"name": "attention", "num_heads": 2}``."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def compare_command(
    path: str | None,
    *,
    out: str,
    store: str | None,
    workers: int,
    lists: dict[str, str | None],
    assignments: list[str],
    tiny: bool,
    report: bool,
    log: Log = print,
    executor: str = "local",
    ray_address: str | None = None,
) -> CompareSummary:
    """What ``mixerlab compare`` does: build the sweep, run it, print a summary."""
    from mixerlab.bench.store import display_url

    sweep = build_sweep(path, lists=lists, assignments=assignments, tiny=tiny)
    summary = compare(
        sweep,
        out_dir=out,
        store=store,
        workers=workers,
        report=report,
        log=log,
        executor=executor,
        ray_address=ray_address,
    )
    if summary.interrupted:
        return summary
    log(
        f"done in {summary.seconds:.0f}s: {len(summary.finished)} run(s) finished, {summary.skipped_done} "
        f"already in the store, {len(summary.failed)} failed; store: {display_url(summary.store_url)}"
    )
    return summary
