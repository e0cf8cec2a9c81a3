"""A comparison's plan: the sweep config, its expansion into runs, their labels, and the checks.

:class:`SweepConfig` (models x widths x learning rates x seeds, plus a ``grid`` over any config
field) is validated on construction; :func:`plan` expands it into :class:`PlannedRun` s (one per
point, equal runs once, each with a label naming only the axes that vary) and :func:`preflight`
builds every (model, width) once before anything runs. :func:`build_sweep` is the command line's
way in (a file, comma lists, ``key=value`` overrides). Nothing here trains or writes.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
