"""The transform contract and the helpers every transform family shares.

``apply(model, context)`` gets a :class:`TransformContext` (the task, its training data for
calibration, the device). ``when: before`` transforms the freshly built model, which is then
trained (pruning masks, fake quantisers and ordered factors stay in place during training);
``when: after`` transforms the trained model, which is evaluated again.
``apply`` returns the model (the same object or a new one) and a dict of facts recorded with the
result (the sparsity reached, ``bytes`` of the packed file, ``infer_tokens_per_s``, ...).
``finalize`` makes a before-training transform permanent once training ends; the trainer also
calls it right after an ``after`` transform's ``apply``.

Shapes: a batch is ``{"inputs": Tensor | dict[str, Tensor], "targets": Tensor}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from mixerlab.errors import check, check_choice
from mixerlab.models.model import tokens_per_example
from mixerlab.registry import TRANSFORMS

WHEN = ("before", "after")


@dataclass
class TransformContext:
    """What a transform may read besides the model: calibration data comes from ``data``."""

    task: Any = None
    data: Any = None  # the task's training TaskData
    device: Any = "cpu"


class Transform:
    """``apply(model, context) -> (model, facts)``; ``finalize(model)`` ends a ``before`` transform.

    ``when`` is set by :func:`create_transform` from the config (``after`` when built directly):
    a transform that works differently on an untrained model (quantisation-aware training rather
    than post-training quantisation) reads it.
    """

    when: str = "after"

    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        raise NotImplementedError

    def finalize(self, model: nn.Module) -> nn.Module:
        return model


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The weight matrices of every ``nn.Linear`` and ``nn.Conv1d``/``Conv2d`` in ``model``.

    Embeddings, norms and biases are left alone, as in the pruning literature.
    """
    # A weight tied to another module (the LM head to the embedding) is not pruned as a matrix.
    counts = _uses(model)
    return [
        (m, "weight")
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)
        and (prune.is_pruned(m) or counts.get(id(m.weight), 0) == 1)
    ]


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros over the prunable weights."""
    weights = [getattr(m, name) for m, name in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return float(sum((w == 0).sum() for w in weights)) / max(total, 1)


def _uses(model: nn.Module) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return counts


def linear_layers(model: nn.Module, skip: tuple[str, ...] | list[str] = ()) -> list[tuple[str, nn.Linear]]:
    """``(name, module)`` of every plain ``nn.Linear`` whose weight is its own (not tied).

    ``skip`` lists name prefixes to leave alone (``["head"]`` keeps the classifier in full
    precision, as BitNet keeps its embedding and output layer).
    """
    counts, seen, out = _uses(model), set(), []
    for name, module in model.named_modules():
        if type(module) is not nn.Linear or id(module) in seen:
            continue
        seen.add(id(module))
        if counts.get(id(module.weight), 0) != 1 or any(name.startswith(p) for p in skip):
            continue
        out.append((name, module))
    return out


def replace_modules(model: nn.Module, new: dict[int, nn.Module]) -> nn.Module:
    """Swap every child ``c`` with ``id(c) in new`` for ``new[id(c)]`` (shared children stay shared)."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in new:
                setattr(parent, child_name, new[id(child)])
    return model


def batches(context: TransformContext | None, num_batches: int, batch_size: int) -> Iterator[dict[str, Any]]:
    """The first ``num_batches`` batches of the calibration data (the task's training data)."""
    check(
        context is not None and context.data is not None,
        "transform",
        "context.data",
        None,
        "this transform reads calibration data: pass TransformContext(task=..., data=task.train_data(seed))",
    )
    n = len(context.data)
    for i in range(num_batches):
        lo = (i * batch_size) % n
        yield context.data.batch(slice(lo, min(lo + batch_size, n)), context.device)


def tokens_in(batch: dict[str, Any], model: nn.Module) -> int:
    """Tokens the backbone sees in ``batch``: positions of a token task, else examples x stem tokens."""
    return tokens_per_example(model, batch["inputs"]) * len(batch["targets"])


@torch.no_grad()
def inference_tokens_per_second(
    model: nn.Module, context: TransformContext | None, *, batch_size: int = 64, repeats: int = 3
) -> float | None:
    """Forward throughput of ``model`` in evaluation mode on one calibration batch (best of ``repeats``).

    The training throughput of a run is the same for every ``after`` transform; this is the
    figure the transform changes (fake quantisers measure the simulation, not integer kernels).
    """
    if context is None or context.data is None:
        return None
    batch = next(batches(context, 1, batch_size))
    was_training = model.training
    model.eval()
    model(batch["inputs"])  # warm-up: lazy tables, allocator
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(batch["inputs"])
        best = min(best, time.perf_counter() - start)
    model.train(was_training)
    return tokens_in(batch, model) / best


def size_facts(model: nn.Module, context: TransformContext | None) -> dict[str, Any]:
    """``bytes`` of the packed file, parameters and inference tokens/s: the frontier's axes."""
    from mixerlab.train.transforms.storage import compressed_bytes

    return {
        "bytes": compressed_bytes(model),
        "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
        "infer_tokens_per_s": inference_tokens_per_second(model, context),
    }


def check_fraction(owner: str, field: str, value: Any, *, closed: bool = False) -> None:
    ok = isinstance(value, int | float) and (0 <= value <= 1 if closed else 0 <= value < 1)
    check(ok, owner, field, value, "expected 0 <= value <= 1" if closed else "expected 0 <= value < 1")


def module_path(model: nn.Module) -> Callable[[nn.Module], str]:
    names = {id(m): n for n, m in model.named_modules()}
    return lambda m: names.get(id(m), "?")


def create_transform(spec: dict[str, Any]) -> tuple[Transform, str]:
    """A transform and its ``when`` from ``{name, options, when}``."""
    when = spec.get("when", "after")
    check_choice("transform", "when", when, WHEN)
    unknown = set(spec) - {"name", "options", "when"}
    check(not unknown, "transform", "keys", sorted(unknown), "allowed keys are name, options, when")
    transform = TRANSFORMS.create(spec["name"], **(spec.get("options") or {}))
    transform.when = when
    return transform, when
