"""Transforms: ``model -> model`` changes applied by config before or after training.

A transform is registered in :data:`mixerlab.registry.TRANSFORMS` and listed in a run config::

    transforms: [{name: prune_magnitude, options: {amount: 0.5}, when: after}]

``apply(model, context)`` gets a :class:`TransformContext` (the task, its training data for
calibration, the device). ``when: before`` transforms the freshly built model, which is then
trained (pruning masks stay applied during training); ``when: after`` transforms the trained
model, which is evaluated again.
``apply`` returns the model (the same object or a new one) and a dict of facts recorded with the
result (for pruning: the sparsity reached). ``finalize`` makes a before-training transform
permanent once training ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from mixerlab.errors import check, check_choice
from mixerlab.registry import TRANSFORMS

WHEN = ("before", "after")


@dataclass
class TransformContext:
    """What a transform may read besides the model: calibration data comes from ``data``."""

    task: Any = None
    data: Any = None  # the task's training TaskData
    device: Any = "cpu"


class Transform:
    """``apply(model, context) -> (model, facts)``; ``finalize(model)`` ends a ``before`` transform."""

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
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
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


@TRANSFORMS.register(
    "prune_magnitude",
    paper="Learning both Weights and Connections for Efficient Neural Networks",
    arxiv="1506.02626",
    test_kwargs={"amount": 0.5},
)
class PruneMagnitude(Transform):
    """Unstructured magnitude pruning (arXiv:1506.02626): zero the smallest ``amount`` of weights.

    ``scope="global"`` ranks every prunable weight together; ``"layer"`` prunes each matrix by
    ``amount``. Before training the zeros are kept by masks (``torch.nn.utils.prune``) and made
    permanent by :meth:`finalize`; after training they are written into the weights at once.
    """

    def __init__(self, amount: float = 0.5, scope: str = "global") -> None:
        check(0 <= amount < 1, "prune_magnitude", "amount", amount, "expected 0 <= amount < 1")
        check_choice("prune_magnitude", "scope", scope, ("global", "layer"))
        self.amount, self.scope = amount, scope

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        targets = prunable_weights(model)
        if self.scope == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=self.amount)
        else:
            for module, name in targets:
                prune.l1_unstructured(module, name, amount=self.amount)
        return model, {"sparsity": sparsity(model)}

    def finalize(self, model: nn.Module) -> nn.Module:
        for module, name in prunable_weights(model):
            if prune.is_pruned(module) and hasattr(module, name + "_orig"):
                prune.remove(module, name)
        return model


def create_transform(spec: dict[str, Any]) -> tuple[Transform, str]:
    """A transform and its ``when`` from ``{name, options, when}``."""
    when = spec.get("when", "after")
    check_choice("transform", "when", when, WHEN)
    unknown = set(spec) - {"name", "options", "when"}
    check(not unknown, "transform", "keys", sorted(unknown), "allowed keys are name, options, when")
    return TRANSFORMS.create(spec["name"], **(spec.get("options") or {})), when
