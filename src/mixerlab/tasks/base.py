"""The task API: deterministic data of one *kind*, what a model needs from it, and its objective.

A task declares its ``kind`` and the inputs and outputs a model needs (:meth:`Task.model_io`):

============  =================================  ===================  ===========================
kind          inputs                             targets              model_io
============  =================================  ===================  ===========================
next_token    tokens ``[N, T]`` int64            ``[N, T]`` int64     ``vocab_size``
classify      images ``[N, C, H, W]``, table     ``[N]`` int64        ``num_classes`` + the input's
              ``{"numerical": [N, F], ...}``                          (``image_size``, ``in_chans``
                                                                      / ``num_features``, ...)
regress       a table, as above                  ``[N]`` float        ``num_outputs`` + the input's
forecast      series ``[N, context, C]`` float   ``[N, horizon, C]``  ``context``, ``horizon``,
                                                                      ``num_channels``
============  =================================  ===================  ===========================

For next-token tasks ``targets`` is ``-100`` wherever nothing is scored, so one causal language
model (``logits: [N, T, V]``) serves every probe. ``slices`` label each example (``[N]`` int64
per slice name, e.g. its number of key-value pairs, its length or its class) so that the metric
is reported overall and per slice. The task's ``objective`` (a name in
:data:`mixerlab.registry.OBJECTIVES`) gives the loss and the metric.

A task is built from keyword options (validated by its registry entry) and makes its training,
validation and evaluation sets from a seed: the same seed gives the same tensors, a different
seed different ones. Evaluation sets are a list because their lengths may differ from each other
(train short, test long).
"""

from __future__ import annotations

import inspect
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from mixerlab.errors import check
from mixerlab.registry import TASKS

TASK_KINDS = ("next_token", "classify", "regress", "forecast")
Inputs = Tensor | dict[str, Tensor]

IGNORE = -100


@dataclass
class TaskData:
    """``inputs`` (a tensor or a dict of tensors), ``targets`` and slice labels ``{name: [N]}``.

    Every tensor leads with the example dimension ``N``.
    """

    inputs: Inputs
    targets: Tensor
    slices: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.targets.shape[0]
        for name, tensor in _named_inputs(self.inputs):
            if tensor.shape[0] != n:
                raise ValueError(f"{name} has {tensor.shape[0]} examples, targets {n}")
        tokens = isinstance(self.inputs, Tensor) and self.inputs.dtype == torch.long
        # Token tasks: one target per position.
        if tokens and (self.inputs.shape != self.targets.shape or self.inputs.dim() != 2):
            shapes = f"inputs {tuple(self.inputs.shape)} and targets {tuple(self.targets.shape)}"
            raise ValueError(f"{shapes} must be [N, T]")
        for name, labels in self.slices.items():
            if labels.shape != (n,):
                raise ValueError(f"slice {name!r} has shape {tuple(labels.shape)}, expected [N]")

    def __len__(self) -> int:
        return self.targets.shape[0]

    @property
    def seq_len(self) -> int:
        """Positions per example of a token task (``inputs: [N, T]``)."""
        if not isinstance(self.inputs, Tensor) or self.inputs.dim() < 2:
            raise TypeError("seq_len is defined for token inputs [N, T]")
        return self.inputs.shape[1]

    def select(self, index: Tensor | slice) -> TaskData:
        """The examples at ``index`` (a slice or an index tensor), with their slice labels."""
        return TaskData(
            inputs=map_inputs(self.inputs, lambda t: t[index]),
            targets=self.targets[index],
            slices={k: v[index] for k, v in self.slices.items()},
        )

    def batch(self, index: Tensor | slice, device: torch.device | str = "cpu") -> dict[str, Any]:
        """``{"inputs": ..., "targets": ...}`` for the examples at ``index``, on ``device``."""
        return {
            "inputs": map_inputs(self.inputs, lambda t: t[index].to(device)),
            "targets": self.targets[index].to(device),
        }

    @staticmethod
    def concat(parts: list[TaskData]) -> TaskData:
        """Stack examples of equal shape (inputs and slices must carry the same names)."""
        first = parts[0].inputs
        if isinstance(first, Tensor):
            inputs: Inputs = torch.cat([p.inputs for p in parts])
        else:
            inputs = {k: torch.cat([p.inputs[k] for p in parts]) for k in first}
        return TaskData(
            inputs=inputs,
            targets=torch.cat([p.targets for p in parts]),
            slices={k: torch.cat([p.slices[k] for p in parts]) for k in parts[0].slices},
        )


def map_inputs(inputs: Inputs, fn) -> Inputs:
    """Apply ``fn`` to the tensor, or to every tensor of a dict of inputs."""
    if isinstance(inputs, Tensor):
        return fn(inputs)
    return {k: fn(v) for k, v in inputs.items()}


def _named_inputs(inputs: Inputs) -> list[tuple[str, Tensor]]:
    if isinstance(inputs, Tensor):
        return [("inputs", inputs)]
    return [(f"inputs[{k!r}]", v) for k, v in inputs.items()]


@dataclass
class Metrics:
    """A task metric overall and per slice: ``slices[slice_name][slice_value] = metric``."""

    name: str
    value: float
    higher_is_better: bool
    slices: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "higher_is_better": self.higher_is_better,
            "slices": self.slices,
        }

    def reached(self, target: float | None) -> bool:
        if target is None or not math.isfinite(self.value):
            return False
        return self.value >= target if self.higher_is_better else self.value <= target


class Task:
    """Base class of tasks. Subclasses set ``kind``, ``objective`` and implement the data methods.

    ``model_io()`` is what a model builder needs from the task (a next-token task's default is its
    ``vocab_size``); ``val_data`` is ``None`` for tasks without a validation split.
    """

    kind: ClassVar[str] = "next_token"
    # A name in OBJECTIVES: the loss, the metric and whether higher is better.
    objective: ClassVar[str] = "cross_entropy"
    vocab_size: int
    # Filled by create_task: every option with its default, stored with each result.
    options: dict[str, Any]

    def model_io(self) -> dict[str, Any]:
        """Keyword arguments a model builder takes from this task (e.g. ``{"vocab_size": 32}``)."""
        return {"vocab_size": self.vocab_size}

    def train_data(self, seed: int) -> TaskData:
        raise NotImplementedError

    def val_data(self, seed: int) -> TaskData | None:
        return None

    def eval_data(self, seed: int) -> list[TaskData]:
        raise NotImplementedError

    @property
    def train_seq_len(self) -> int:
        """Tokens per training example as the model sees them (patches, features, positions)."""
        raise NotImplementedError

    @property
    def eval_seq_lens(self) -> list[int]:
        return [self.train_seq_len]

    @property
    def metric(self) -> str:
        from mixerlab.registry import OBJECTIVES

        return OBJECTIVES.create(self.objective).metric

    @property
    def higher_is_better(self) -> bool:
        from mixerlab.registry import OBJECTIVES

        return OBJECTIVES.create(self.objective).higher_is_better


def derive_seed(seed: int, *salt: object) -> int:
    """A stable 63-bit seed from ``seed`` and labels (e.g. the split), the same on every platform."""
    text = "/".join([str(seed), *map(str, salt)]).encode()
    return (zlib.crc32(text) << 31 | zlib.crc32(text[::-1])) & ((1 << 63) - 1)


def generator(seed: int, *salt: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *salt))


def check_int_list(owner: str, field_name: str, value: Any, minimum: int = 1) -> list[int]:
    """Accept an int or a non-empty list of ints >= ``minimum``; return the list."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    ok = (
        isinstance(values, list | tuple)
        and len(values) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)
    )
    check(ok, owner, field_name, value, f"expected an integer >= {minimum} or a non-empty list of them")
    return list(values)


def create_task(name: str, /, **options: Any) -> Task:
    """Build a registered task; unknown options raise :class:`ConfigError` naming them."""
    task = TASKS.create(name, **options)
    entry = TASKS.entry(name)
    bound = inspect.signature(entry.builder).bind_partial(**options)
    bound.apply_defaults()
    task.options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in bound.arguments.items()}
    return task
