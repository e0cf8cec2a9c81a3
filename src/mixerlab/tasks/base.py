"""The task API: deterministic data as token sequences with per-position targets, and a metric.

Shapes: ``inputs, targets: [N, T]`` (int64); ``targets`` is ``-100`` wherever nothing is scored, so
one causal language model (``logits: [N, T, V]``) serves every task. ``slices`` label each example
(``[N]`` int64 per slice name, e.g. its number of key-value pairs or its length) so that the metric
is reported overall and per slice.

A task is built from keyword options (validated by its registry entry), exposes ``vocab_size``,
and makes its training set and its evaluation sets from a seed: the same seed gives the same
tensors, a different seed different ones. Evaluation sets are a list because their lengths may
differ from each other (train short, test long).
"""

from __future__ import annotations

import inspect
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.registry import TASKS

IGNORE = -100


@dataclass
class TaskData:
    """``inputs, targets: [N, T]`` and per-example slice labels ``{name: [N]}``."""

    inputs: Tensor
    targets: Tensor
    slices: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.dim() != 2:
            raise ValueError(
                f"inputs {tuple(self.inputs.shape)} and targets {tuple(self.targets.shape)} must be [N, T]"
            )
        for name, labels in self.slices.items():
            if labels.shape != (self.inputs.shape[0],):
                raise ValueError(f"slice {name!r} has shape {tuple(labels.shape)}, expected [N]")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]

    @staticmethod
    def concat(parts: list[TaskData]) -> TaskData:
        """Stack examples of equal length (slices must carry the same names)."""
        return TaskData(
            inputs=torch.cat([p.inputs for p in parts]),
            targets=torch.cat([p.targets for p in parts]),
            slices={k: torch.cat([p.slices[k] for p in parts]) for k in parts[0].slices},
        )


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
    """Base class of tasks. Subclasses set ``vocab_size`` and implement the two data methods.

    The default metric is accuracy over scored positions; a task with another metric overrides
    :meth:`score` (per-example numerator and denominator, so that slices aggregate exactly).
    """

    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    vocab_size: int
    # Filled by create_task: every option with its default, stored with each result.
    options: dict[str, Any]

    def train_data(self, seed: int) -> TaskData:
        raise NotImplementedError

    def eval_data(self, seed: int) -> list[TaskData]:
        raise NotImplementedError

    @property
    def train_seq_len(self) -> int:
        raise NotImplementedError

    @property
    def eval_seq_lens(self) -> list[int]:
        return [self.train_seq_len]

    def score(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Per-example ``(numerator, denominator)``; the metric is ``sum(num) / sum(den)``."""
        scored = targets != IGNORE
        correct = (logits.argmax(-1) == targets) & scored
        return correct.sum(-1).double(), scored.sum(-1).double()


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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: Task,
    data: list[TaskData],
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> Metrics:
    """The task metric of ``model`` on ``data``, overall and per slice."""
    was_training = model.training
    model.eval()
    nums, dens, slices = [], [], {}
    try:
        for part in data:
            for start in range(0, len(part), batch_size):
                inputs = part.inputs[start : start + batch_size].to(device)
                targets = part.targets[start : start + batch_size].to(device)
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                    logits, _ = model(inputs)
                num, den = task.score(logits.float(), targets)
                nums.append(num.cpu())
                dens.append(den.cpu())
            for key, labels in part.slices.items():
                slices.setdefault(key, []).append(labels)
    finally:
        model.train(was_training)
    num, den = torch.cat(nums), torch.cat(dens)
    per_slice: dict[str, dict[str, float]] = {}
    for key, parts in slices.items():
        labels = torch.cat(parts)
        per_slice[key] = {
            str(int(v)): _ratio(num[labels == v].sum(), den[labels == v].sum()) for v in labels.unique()
        }
    return Metrics(task.metric, _ratio(num.sum(), den.sum()), task.higher_is_better, per_slice)


def _ratio(num: Tensor, den: Tensor) -> float:
    return float(num / den) if float(den) > 0 else float("nan")
