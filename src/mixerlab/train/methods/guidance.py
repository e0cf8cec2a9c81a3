"""Representational guidance ("Training the Untrainable", arXiv:2410.20035).

The target model minimises its task loss plus, at every piece (stem, blocks), one minus the
linear CKA between its representation and the representation of a fixed guide network at the
same relative depth. The guide (trained or untrained, of any registered architecture) is never
changed; a guide of another architecture passes on part of its inductive bias.

Shapes: representations ``[M, D]`` and ``[M, D_guide]`` over the same ``M`` rows (examples, by
the mean of their tokens, or the scored positions of a token task); CKA is a scalar in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import (
    TrainingMethod,
    aux_total,
    blocks_of,
    embed,
    features,
    forward_pieces,
    load_reference,
    matching_piece,
    run_block,
    unwrap,
)


def linear_cka(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Linear CKA (Kornblith et al. 2019) of ``x: [M, D1]`` and ``y: [M, D2]`` over the ``M`` rows.

    ``||y_c^T x_c||_F^2 / (||x_c^T x_c||_F ||y_c^T y_c||_F)`` with column-centred ``x_c, y_c``:
    invariant to orthogonal maps and isotropic scaling of either side, 1 for ``x == y``.
    """
    x = x.float() - x.float().mean(dim=0, keepdim=True)
    y = y.float() - y.float().mean(dim=0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    return cross / ((x.T @ x).norm() * (y.T @ y).norm() + eps)


@METHODS.register(
    "guidance",
    paper="Training the Untrainable: Introducing Inductive Bias via Representational Alignment",
    arxiv="2410.20035",
    summary="Task loss plus layer-wise CKA distance to a fixed (trained or untrained) guide network.",
    test_kwargs={
        "guide": {
            "model": {"name": "tabular", "dim": 8, "depth": 2, "mixer": "attention"},
            "task": {"name": "synthetic_table", "options": {"num_examples": 200}},
        },
        "weight": 1.0,
    },
)
class Guidance(TrainingMethod):
    """Guidance (arXiv:2410.20035): ``loss = task + weight * mean_l (1 - CKA(h_l, g_{m(l)}))``.

    ``guide`` names the guide network (see :func:`~mixerlab.train.methods.base.load_reference`:
    ``{model, task}`` for an untrained guide drawn from ``seed``, plus ``train`` to train it first,
    or ``{checkpoint}``); ``m(l)`` is the guide's piece at the same relative depth.
    """

    def __init__(self, guide: dict[str, Any] | nn.Module, weight: float = 1.0) -> None:
        check(weight >= 0, "guidance", "weight", weight, "expected >= 0")
        self.weight = weight
        self.guide = load_reference(guide, "guidance", "guide")
        blocks_of(self.guide, "guidance")
        self.last_cka: list[float] = []

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks_of(model, "guidance")
        return model

    @torch.no_grad()
    def guide_pieces(self, inputs: Any) -> list[Tensor]:
        h, _ = embed(self.guide, inputs)
        pieces = [h]
        for block in blocks_of(self.guide, "guidance"):
            pieces.append(run_block(block, pieces[-1]))
        return pieces

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        device = targets.device
        if next(self.guide.parameters()).device != device:
            self.guide.to(device)
        guide = self.guide_pieces(inputs)
        stem, guide_stem = unwrap(model).stem, unwrap(self.guide).stem
        with collect_aux_losses() as aux:
            outputs, pred = forward_pieces(model, inputs)
            loss = objective.loss(pred, targets)
            depth, guide_depth = len(outputs) - 1, len(guide) - 1
            ckas = []
            for i, h in enumerate(outputs):
                g = guide[matching_piece(i, depth, guide_depth)]
                ours, _ = features(h, targets, stem)
                theirs, _ = features(g, targets, guide_stem)
                check(
                    ours.shape[0] == theirs.shape[0],
                    "guidance",
                    "guide",
                    tuple(g.shape),
                    f"the guide must read the same positions as the model ({tuple(h.shape)})",
                )
                ckas.append(linear_cka(ours, theirs))
            distance = torch.stack([1 - c for c in ckas]).mean()
            total = loss + self.weight * distance + aux_total(aux, loss)
        self.last_cka = [float(c.detach()) for c in ckas]
        return total, pred
