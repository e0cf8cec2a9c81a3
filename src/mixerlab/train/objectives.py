"""Objectives: the loss a model is trained on, the metric it is judged by, and how both read outputs.

Shapes, by task kind (see :mod:`mixerlab.tasks.base`):

- next_token: ``pred: [N, T, V]`` logits, ``targets: [N, T]`` int64 with ``-100`` where unscored;
- classify: ``pred: [N, C]`` logits, ``targets: [N]`` int64;
- regress: ``pred: [N]``, ``targets: [N]`` float;
- forecast: ``pred: [N, horizon, C]``, ``targets: [N, horizon, C]`` float.

``score`` returns a per-example ``(numerator, denominator)``; the metric over any set of examples
(the whole set, or one slice) is ``sum(num) / sum(den)``, so slices aggregate exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mixerlab.errors import ConfigError
from mixerlab.registry import OBJECTIVES

IGNORE = -100


class Objective:
    """Loss, metric and the reading of predictions for one kind of target."""

    metric: str = ""
    higher_is_better: bool = True

    def loss(self, pred: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, pred: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def _check_same_shape(owner: str, pred: Tensor, targets: Tensor) -> None:
    if pred.shape != targets.shape:
        raise ConfigError(
            owner, "pred.shape", tuple(pred.shape), f"expected the targets' shape {tuple(targets.shape)}"
        )


def _flatten_logits(pred: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``[N, T, V], [N, T]`` or ``[N, V], [N]`` -> ``[M, V], [M]``."""
    if pred.dim() != targets.dim() + 1 or pred.shape[:-1] != targets.shape:
        raise ConfigError(
            "cross_entropy",
            "pred.shape",
            tuple(pred.shape),
            f"expected the targets' shape {tuple(targets.shape)} plus a class dimension",
        )
    return pred.reshape(-1, pred.shape[-1]), targets.reshape(-1)


@OBJECTIVES.register("cross_entropy", summary="Cross-entropy loss; accuracy over scored positions.")
class CrossEntropy(Objective):
    """Cross-entropy over classes (positions marked ``-100`` are not scored); metric: accuracy."""

    metric = "accuracy"

    def loss(self, pred: Tensor, targets: Tensor) -> Tensor:
        logits, labels = _flatten_logits(pred, targets)
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)

    def score(self, pred: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        _flatten_logits(pred, targets)
        scored = targets != IGNORE
        correct = (pred.argmax(-1) == targets) & scored
        if targets.dim() == 1:
            return correct.double(), scored.double()
        return correct.flatten(1).sum(-1).double(), scored.flatten(1).sum(-1).double()


@OBJECTIVES.register(
    "bits_per_token", summary="Cross-entropy loss; metric: bits per scored token (lower is better)."
)
class BitsPerToken(CrossEntropy):
    """Cross-entropy training; the metric is the cross-entropy in bits per scored token."""

    metric = "bits_per_char"
    higher_is_better = False

    def score(self, pred: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        _flatten_logits(pred, targets)
        scored = targets != IGNORE
        nll = F.cross_entropy(pred.float().movedim(-1, 1), targets.clamp_min(0), reduction="none")
        bits = (nll * scored).flatten(1).sum(-1).double() / math.log(2)
        return bits, scored.flatten(1).sum(-1).double()


class _ElementwiseError(Objective):
    """An error of every predicted value (``error(pred - target)``), averaged: loss and metric alike."""

    higher_is_better = False

    @staticmethod
    def error(diff: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, pred: Tensor, targets: Tensor) -> Tensor:
        _check_same_shape(self.metric, pred, targets)
        return self.error(pred.float() - targets.float()).mean()

    def score(self, pred: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        _check_same_shape(self.metric, pred, targets)
        err = self.error(pred.double() - targets.double()).reshape(len(targets), -1)
        return err.sum(-1), torch.full_like(err[:, 0], err.shape[1])


@OBJECTIVES.register("mse", summary="Mean squared error: the loss and the metric (lower is better).")
class MeanSquaredError(_ElementwiseError):
    """Squared error, averaged over every predicted value."""

    metric = "mse"
    error = staticmethod(torch.square)


@OBJECTIVES.register("mae", summary="Mean absolute error: the loss and the metric (lower is better).")
class MeanAbsoluteError(_ElementwiseError):
    """Absolute error, averaged over every predicted value."""

    metric = "mae"
    error = staticmethod(torch.abs)
