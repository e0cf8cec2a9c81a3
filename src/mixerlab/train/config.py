"""Typed run configuration: what to train (model), on what (task), and how (optimiser, budget).

Configs are dataclasses of plain data (names and spec dicts, never classes), so they serialise
to JSON/YAML and are stored with every result. :func:`from_dict` rejects unknown keys and wrong
types with a :class:`~mixerlab.errors.ConfigError` that names the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mixerlab.errors import ConfigError, check, check_positive_int

C = TypeVar("C")


@dataclass
class TaskConfig:
    """A registered task and its options; ``seed`` fixes the data (same for every model)."""

    name: str = "mqar"
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass
class ModelConfig:
    """A registered model; ``vocab_size`` comes from the task. Specs are names or dicts.

    ``name: auto`` in a sweep takes the model for each task's kind and inputs (``lm`` for token
    tasks, ``image_classifier`` for images, ``tabular``, ``forecaster``), so one sweep can span
    tasks of several kinds with the same width, depth and blocks.
    """

    name: str = "lm"
    dim: int = 64
    depth: int = 2
    mixer: Any = "attention"
    channel_mixer: Any = "swiglu"
    norm: Any = "rmsnorm"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive_int("model", "dim", self.dim)
        check_positive_int("model", "depth", self.depth)


@dataclass
class TrainConfig:
    """Optimiser, schedule and budget. One epoch is one pass over the task's training set."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_frac: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    bf16: bool = False
    seed: int = 0
    # Stop as soon as an evaluation reaches this metric (>= for accuracy, <= for bits per char).
    target_metric: float | None = None
    # Stop training after this many CPU seconds of the run's process. A safety cap only: a run it
    # ends depends on the machine's load (status ``time_limit``); budgets are ``max_steps``.
    max_cpu_seconds: float | None = None
    eval_batch_size: int = 256
    device: str = "cpu"
    # The run's budget in optimiser steps: the schedule ends at min(epochs x steps per epoch,
    # max_steps), so a run is the same on every machine and its learning rate reaches the end
    # of its decay. None: the epochs alone set the budget.
    max_steps: int | None = None
    # How several processes under torchrun share the model: "ddp" (a replica per rank) or "fsdp"
    # (parameters sharded, each Block one unit, for models too large for one device).
    distributed: str = "ddp"
    # Experiment trackers (``tensorboard``, ``mlflow``: names or {name, **options}); see
    # mixerlab.train.loggers. They record the run and change nothing in it: not part of its key.
    loggers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.loggers:
            from mixerlab.train.loggers import check_logger_specs

            check_logger_specs(self.loggers)
        check_positive_int("train", "epochs", self.epochs)
        check(
            self.distributed in ("ddp", "fsdp"),
            "train",
            "distributed",
            self.distributed,
            "expected 'ddp' or 'fsdp'",
        )
        check_positive_int("train", "batch_size", self.batch_size)
        check_positive_int("train", "eval_batch_size", self.eval_batch_size)
        check(self.lr > 0, "train", "lr", self.lr, "expected > 0")
        check(self.weight_decay >= 0, "train", "weight_decay", self.weight_decay, "expected >= 0")
        check(0 <= self.warmup_frac < 1, "train", "warmup_frac", self.warmup_frac, "expected 0 <= x < 1")
        check(0 <= self.min_lr_ratio <= 1, "train", "min_lr_ratio", self.min_lr_ratio, "expected in [0, 1]")
        check(
            self.grad_clip is None or self.grad_clip > 0,
            "train",
            "grad_clip",
            self.grad_clip,
            "expected > 0 or null",
        )
        if self.max_steps is not None:
            check_positive_int("train", "max_steps", self.max_steps)
        check(
            self.max_cpu_seconds is None or self.max_cpu_seconds > 0,
            "train",
            "max_cpu_seconds",
            self.max_cpu_seconds,
            "expected > 0 or null",
        )


@dataclass
class MethodConfig:
    """A registered training method (``standard``, ``gradient_noise``, ...) and its options."""

    name: str = "standard"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """One training run: a model on a task with a training recipe.

    ``objective`` overrides the task's own (None keeps it); ``method`` is how the model learns;
    ``transforms`` are ``{name, options, when}`` dicts applied before or after training.
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    transforms: list[dict[str, Any]] = field(default_factory=list)
    objective: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def key(self) -> str:
        """A stable identity of the run: equal configs give equal keys on every machine."""
        return config_key(self)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# Fields added after runs were first stored, by dotted path: left out of a run's key while at their
# defaults, so a run keeps the key (and its stored result) it had before they existed.
_LATER_FIELDS: dict[str, Any] = {
    "method": {"name": "standard", "options": {}},
    "transforms": [],
    "objective": None,
    "train.max_steps": None,
    "train.distributed": "ddp",
}
# Fields that record a run without changing it: never part of its key.
_NOT_IN_KEY = ("train.loggers",)


def config_key(config: Any) -> str:
    data = to_dict(config)
    if isinstance(config, RunConfig):
        for path, default in _LATER_FIELDS.items():
            *parents, last = path.split(".")
            node = data
            for part in parents:
                node = node.get(part, {})
            if last in node and node[last] == default:
                del node[last]
        for path in _NOT_IN_KEY:
            *parents, last = path.split(".")
            node = data
            for part in parents:
                node = node.get(part, {})
            node.pop(last, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def from_dict(cls: type[C], data: Any, owner: str | None = None) -> C:
    """Build dataclass ``cls`` from a plain dict, recursing into nested config dataclasses.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the field.
    """
    owner = owner or cls.__name__
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(owner, "<config>", data, f"expected a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(owner, key, value, f"unknown key; allowed keys are {sorted(fields)}")
        kwargs[key] = _coerce(hints[key], value, owner, key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, owner: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{owner}.{key}")
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, owner, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(owner, key, value, f"expected {_name(hint)}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(owner, key, value, f"expected a list of {len(args)} values")
        return tuple(_coerce(a, v, owner, key) for a, v in zip(args, value))
    if origin is list:
        (arg,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(owner, key, value, f"expected {_name(hint)}")
        return [_coerce(arg, v, owner, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(owner, key, value, "expected a mapping")
        return dict(value)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "3e-3" (no dot) as a string; a number written that way is meant as one.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(owner, key, value, "expected a number")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(owner, key, value, "expected an integer")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(owner, key, value, "expected true or false")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(owner, key, value, "expected a string")
    return value


def _name(hint: Any) -> str:
    return str(hint).replace("typing.", "")


def load_mapping(path: str | None) -> dict[str, Any]:
    """A YAML or JSON file as a dict (``{}`` for no path). YAML is imported only when needed."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError("config", "path", str(path), "no such file; expected a YAML or JSON file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("config", "path", str(path), f"cannot be read as text ({err})") from None
    import yaml

    try:
        # JSON is YAML, but a .json file gets JSON's own messages (line and column of the fault).
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        where = " ".join(str(err).split())
        raise ConfigError("config", "path", str(path), f"expected valid YAML/JSON: {where}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", "path", str(path), "expected a mapping at the top level")
    return data


def parse_value(text: str) -> Any:
    """A command-line value as YAML (``3e-3`` -> float, ``[2, 4]`` -> list, ``gla`` -> str)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            "override", "value", text, f"expected a YAML value ({' '.join(str(err).split())})"
        ) from None
    # YAML 1.1 reads "3e-3" as a string; numbers written that way are meant as numbers.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``train.lr``, ``task.options.num_kv_pairs``) in a nested dict copy."""
    out = json.loads(json.dumps(data))
    for dotted, value in overrides.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError("override", dotted, value, f"{part!r} is not a mapping")
            node = child
        node[last] = value
    return out


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=3e-3", ...]`` -> ``{"train.lr": 0.003}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError("override", "assignment", item, "expected key=value, e.g. train.lr=3e-3")
        key, text = item.split("=", 1)
        out[key.strip()] = parse_value(text)
    return out
