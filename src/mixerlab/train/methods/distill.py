"""Knowledge distillation from a teacher (arXiv:1503.02531): soft targets and, optionally, features.

The student learns from the task loss and from a fixed teacher's predictions softened by a
temperature; with ``feature_weight > 0`` it also matches, through learned linear maps, the
teacher's representations at chosen pieces (stem = 0, block ``l`` = ``l``; FitNets-style hints).
Usable by name from other work (``distill`` in a run config, or ``Distill(teacher=module)`` in
code, e.g. to recover a linearised or pruned model from the original).

Shapes: logits ``[B, C]`` or ``[B, T, V]`` (only scored positions, ``targets != -100``, count);
a regression or forecast prediction is matched by squared error instead of a softened KL.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import (
    MethodModel,
    TrainingMethod,
    aux_total,
    blocks_of,
    features,
    forward_pieces,
    load_reference,
    matching_piece,
    unwrap,
)


def soft_target_loss(student: Tensor, teacher: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s ``T^2 KL(softmax(t / T) || softmax(s / T))`` over scored rows; MSE for values.

    Class logits (integer targets) are compared softened; the ``T^2`` keeps the gradient's scale
    independent of ``T``. Predictions of real values are compared by squared error.
    """
    teacher = teacher.detach().to(student.dtype)
    if targets.is_floating_point():
        return F.mse_loss(student, teacher)
    keep = targets != -100
    s, t = student[keep] / temperature, teacher[keep] / temperature
    return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean") * (
        temperature**2
    )


@METHODS.register(
    "distill",
    paper="Distilling the Knowledge in a Neural Network",
    arxiv="1503.02531",
    summary="Task loss plus the teacher's softened predictions (and optionally its features).",
    test_kwargs={
        "teacher": {
            "model": {"name": "tabular", "dim": 16, "depth": 2},
            "task": {"name": "synthetic_table", "options": {"num_examples": 200}},
            "train": {"epochs": 1, "batch_size": 32},
        },
        "feature_weight": 1.0,
        "feature_layers": [1],
    },
)
class Distill(TrainingMethod):
    """Knowledge distillation (arXiv:1503.02531): ``(1 - alpha) task + alpha T^2 KL + beta features``.

    ``teacher``: a module, or a spec for :func:`~mixerlab.train.methods.base.load_reference`
    (``{checkpoint: path}`` of :func:`~mixerlab.train.methods.base.save_reference`, or ``{model,
    task, train}`` to train it first). ``temperature`` softens both distributions; ``alpha``
    weighs the teacher against the labels. ``feature_layers`` lists student pieces (ints; the
    teacher's piece at the same relative depth is used) or ``[student, teacher]`` pairs, matched
    by mean squared error after a learned linear map, weighted by ``feature_weight``.
    """

    def __init__(
        self,
        teacher: dict[str, Any] | nn.Module,
        temperature: float = 2.0,
        alpha: float = 0.5,
        feature_weight: float = 0.0,
        feature_layers: list[Any] | None = None,
    ) -> None:
        check(temperature > 0, "distill", "temperature", temperature, "expected > 0")
        check(0 <= alpha <= 1, "distill", "alpha", alpha, "expected a value in [0, 1]")
        check(feature_weight >= 0, "distill", "feature_weight", feature_weight, "expected >= 0")
        check(
            feature_weight == 0 or bool(feature_layers),
            "distill",
            "feature_layers",
            feature_layers,
            "feature_weight > 0 needs the pieces to match, e.g. [1, 2] or [[1, 2]]",
        )
        self.temperature, self.alpha, self.feature_weight = temperature, alpha, feature_weight
        self.teacher = load_reference(teacher, "distill", "teacher")
        self.pairs: list[tuple[int, int]] = []
        self._layers = list(feature_layers or []) if feature_weight > 0 else []

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self._layers:
            return model
        depth = len(blocks_of(model, "distill"))
        teacher_depth = len(blocks_of(self.teacher, "distill.teacher"))
        for item in self._layers:
            pair = (
                (item, matching_piece(item, depth, teacher_depth)) if isinstance(item, int) else tuple(item)
            )
            check(
                len(pair) == 2 and 0 <= pair[0] <= depth and 0 <= pair[1] <= teacher_depth,
                "distill",
                "feature_layers",
                item,
                f"student pieces 0..{depth}, teacher pieces 0..{teacher_depth} (0 = stem)",
            )
            self.pairs.append(pair)
        dim, teacher_dim = unwrap(model).backbone.dim, unwrap(self.teacher).backbone.dim
        hints = nn.ModuleList(nn.Linear(dim, teacher_dim) for _ in self.pairs)
        return MethodModel(model, {"hints": hints})

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        if next(self.teacher.parameters()).device != targets.device:
            self.teacher.to(targets.device)
        with torch.no_grad():
            if self.pairs:
                teacher_pieces, teacher_pred = forward_pieces(self.teacher, inputs)
            else:
                teacher_pred, _ = self.teacher(inputs)
        with collect_aux_losses() as aux:
            if self.pairs:
                pieces, pred = forward_pieces(model, inputs)
            else:
                pred, _ = model(inputs)
            task = objective.loss(pred, targets)
            soft = soft_target_loss(pred, teacher_pred, targets, self.temperature)
            total = (1 - self.alpha) * task + self.alpha * soft + aux_total(aux, task)
            if self.pairs:
                stem, teacher_stem = unwrap(model).stem, unwrap(self.teacher).stem
                hint = sum(
                    F.mse_loss(
                        proj(features(pieces[s], targets, stem)[0]),
                        features(teacher_pieces[t], targets, teacher_stem)[0],
                    )
                    for proj, (s, t) in zip(model.extras["hints"], self.pairs)
                )
                total = total + self.feature_weight * hint / len(self.pairs)
        return total, pred
