"""Evaluation: a model's metric on a task's data, overall and per slice, through the task's objective.

The model is called as ``pred, _ = model(inputs)`` on batches of the task's inputs (a tensor or a
dict of tensors); any callable with that signature works, including a fitted baseline's wrapper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.registry import OBJECTIVES
from mixerlab.tasks.base import Metrics, Task, TaskData


def objective_of(task: Task, name: str | None = None):
    """The objective ``name``, or the task's own when ``name`` is None."""
    return OBJECTIVES.create(name or task.objective)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: Task,
    data: list[TaskData],
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    objective: str | None = None,
) -> Metrics:
    """The task metric of ``model`` on ``data``, overall and per slice."""
    obj = objective_of(task, objective)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    nums, dens, slices = [], [], {}
    try:
        for part in data:
            for start in range(0, len(part), batch_size):
                batch = part.batch(slice(start, start + batch_size), device)
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                    pred, _ = model(batch["inputs"])
                num, den = obj.score(pred.float(), batch["targets"])
                nums.append(num.cpu())
                dens.append(den.cpu())
            for key, labels in part.slices.items():
                slices.setdefault(key, []).append(labels)
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return aggregate(obj, torch.cat(nums), torch.cat(dens), {k: torch.cat(v) for k, v in slices.items()})


def aggregate(obj, num: Tensor, den: Tensor, slices: dict[str, Tensor]) -> Metrics:
    """Metrics from per-example ``(num, den)`` and slice labels."""
    per_slice: dict[str, dict[str, float]] = {}
    for key, labels in slices.items():
        per_slice[key] = {
            str(int(v)): _ratio(num[labels == v].sum(), den[labels == v].sum()) for v in labels.unique()
        }
    return Metrics(obj.metric, _ratio(num.sum(), den.sum()), obj.higher_is_better, per_slice)


def _ratio(num: Tensor, den: Tensor) -> float:
    return float(num / den) if float(den) > 0 else float("nan")
