"""Block-local learning: every block learns from a loss of its own; no gradient crosses blocks.

The model's pieces are the stem (piece 0) and the blocks (pieces 1..L). Each piece's input is
detached (:func:`~mixerlab.train.methods.base.detached_forward`), so a piece's gradient depends
only on its own input and its own local loss:

- ``lls`` (arXiv:2405.15868): the local loss scores the piece's pooled activity against fixed
  periodic basis vectors, one per class -- no trainable parameter is added;
- ``man`` (arXiv:2407.05623): the local loss reads the piece's output through an auxiliary
  network made of an exponential moving average of the *next* block (plus a learnable bias) and
  a head, so some of the next block's function reaches the earlier one without backpropagation;
- ``ccl`` (arXiv:2409.19841): a feedback network carries the targets down, layer by layer, and
  each forward piece and its feedback layer are trained toward each other.

Shapes: piece outputs ``[B, T, D]``; local features ``[M, D]`` (``M = B`` pooled examples for a
class target, or the ``M`` scored positions of a token target); class scores ``[M, C]``.
"""

from __future__ import annotations

import math
from copy import deepcopy
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
    detached_forward,
    features,
    fresh_copy,
    num_classes,
    require_kind,
    run_block,
    unwrap,
)

CLASS_KINDS = ("classify", "next_token")


def periodic_basis(num_classes: int, dim: int) -> Tensor:
    """``[C, D]`` unit vectors ``cos(pi k (n + 1/2) / D)`` for frequencies ``k = 1..C`` (orthogonal).

    The DCT-II cosines: one period-``2D/k`` wave per class, pairwise orthogonal for ``k < D``.
    """
    n = torch.arange(dim, dtype=torch.float64) + 0.5
    k = torch.arange(1, num_classes + 1, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * k * n / dim)
    return (basis / basis.norm(dim=1, keepdim=True)).float()


@METHODS.register(
    "lls",
    paper="LLS: Local Learning Rule for Deep Neural Networks Inspired by Neural Activity Synchronization",
    arxiv="2405.15868",
    summary="Each block is trained by a local loss against fixed periodic basis vectors (one per class).",
    test_kwargs={},
)
class LLS(TrainingMethod):
    """LLS (arXiv:2405.15868): local cross-entropy of each piece's pooled activity against fixed waves.

    Piece ``l`` (stem, blocks but the last) gets ``CE(scale * a_l B^T, y)`` with ``a_l`` its pooled
    output ``[M, D]`` and ``B`` the fixed ``[C, D]`` periodic basis (:func:`periodic_basis`): the
    activity of the piece is pushed to synchronise with its class's wave. The last block and the
    head are trained together by the task loss (the output layer of the paper).
    """

    def __init__(self, scale: float = 1.0) -> None:
        check(scale > 0, "lls", "scale", scale, "expected > 0")
        self.scale = scale
        self.basis: Tensor | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks_of(model, "lls")
        require_kind(model, "lls", CLASS_KINDS, "its local losses score classes")
        classes, dim = num_classes(model, "lls"), unwrap(model).backbone.dim
        check(
            classes < dim,
            "lls",
            "model.dim",
            dim,
            f"needs more channels than classes ({classes}) for distinct orthogonal basis vectors",
        )
        self.basis = periodic_basis(classes, dim)
        return model

    def local_loss(self, h: Tensor, targets: Tensor, stem: nn.Module) -> Tensor:
        feats, labels = features(h, targets, stem)
        return F.cross_entropy(self.scale * feats @ self.basis.to(feats).T, labels)

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        stem = unwrap(model).stem
        with collect_aux_losses() as aux:
            outputs, pred, _ = detached_forward(model, batch["inputs"], detach_head=False)
            loss = objective.loss(pred, batch["targets"])
            local = sum(self.local_loss(h, batch["targets"], stem) for h in outputs[:-1])
            total = loss + local + aux_total(aux, loss)
        return total, pred


class AuxiliaryNet(nn.Module):
    """MAN's auxiliary network: the EMA of the next block, a learnable bias, a readout head."""

    def __init__(self, next_block: nn.Module, norm: nn.Module, head: nn.Module, dim: int) -> None:
        super().__init__()
        self.ema_block = deepcopy(next_block)
        for p in self.ema_block.parameters():
            p.requires_grad_(False)  # moved by the moving average only, never by a gradient
        self.bias = nn.Parameter(torch.zeros(dim))
        self.norm, self.head = fresh_copy(norm), fresh_copy(head)

    def forward(self, h: Tensor, stem: nn.Module, context: dict[str, Any]) -> Tensor:
        y = run_block(self.ema_block, h) + self.bias
        return self.head(self.norm(y), stem, context)


@METHODS.register(
    "man",
    paper="Momentum Auxiliary Network for Supervised Local Learning",
    arxiv="2407.05623",
    summary="Local learning whose auxiliary heads hold an EMA of the next block plus a learnable bias.",
    test_kwargs={"momentum": 0.9},
)
class MomentumAuxiliaryNetwork(TrainingMethod):
    """MAN (arXiv:2407.05623): piece ``l``'s local loss is read through ``EMA(block l+1) + bias + head``.

    After every optimiser step the EMA copy moves toward the current next block
    (``ema = momentum * ema + (1 - momentum) * block``). The gradient of piece ``l`` goes through
    the frozen copy, never through the next block itself; the last block and the model's head are
    trained by the task loss. Works for any head (the auxiliary heads are fresh copies of it).
    """

    def __init__(self, momentum: float = 0.99) -> None:
        check(0 <= momentum < 1, "man", "momentum", momentum, "expected a value in [0, 1)")
        self.momentum = momentum

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks = blocks_of(model, "man")
        base = unwrap(model)
        aux = nn.ModuleList(
            AuxiliaryNet(blocks[i], base.backbone.norm, base.head, base.backbone.dim)
            for i in range(len(blocks))
        )
        # Piece i (stem = 0, block i) is read through the EMA of block i + 1, i.e. blocks[i].
        return MethodModel(model, {"aux": aux})

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        stem, targets = unwrap(model).stem, batch["targets"]
        with collect_aux_losses() as aux_losses:
            outputs, pred, context = detached_forward(model, batch["inputs"], detach_head=False)
            loss = objective.loss(pred, targets)
            local = sum(
                objective.loss(net(h, stem, context), targets)
                for net, h in zip(model.extras["aux"], outputs[:-1])
            )
            total = loss + local + aux_total(aux_losses, loss)
        return total, pred

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        for net, block in zip(model.extras["aux"], blocks_of(model, "man")):
            for ema, p in zip(net.ema_block.parameters(), block.parameters()):
                ema.lerp_(p, 1 - self.momentum)


class FeedbackNetwork(nn.Module):
    """CCL's feedback network: the targets (one-hot classes) carried down level by level.

    ``c_L = top(I_C)`` (``[C, D]``), then ``c_{l-1} = layer_l(c_l)`` with each layer's input detached.
    """

    def __init__(self, num_classes: int, dim: int, depth: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.top = nn.Linear(num_classes, dim)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.GELU()) for _ in range(depth))

    def forward(self) -> list[Tensor]:
        """``[c_0, c_1, ..., c_L]``, each ``[C, D]``: the targets' representation at every level."""
        c = self.top(torch.eye(self.num_classes, device=self.top.weight.device))
        levels = [c]
        for layer in reversed(self.layers):
            levels.append(layer(levels[-1].detach()))
        return levels[::-1]


@METHODS.register(
    "ccl",
    paper="Counter-Current Learning: A Biologically Plausible Dual Network Approach for Deep Learning",
    arxiv="2409.19841",
    summary="A feedback network carries targets down; forward and feedback layers align level by level.",
    test_kwargs={},
)
class CounterCurrentLearning(TrainingMethod):
    """Counter-current learning (arXiv:2409.19841): forward and feedback networks trained toward each other.

    At every level ``l`` (stem and blocks) the forward features ``a_l`` (``[M, D]``) and the feedback
    representations of all classes ``c_l`` (``[C, D]``) are compared as in the paper's
    classification loss: ``scale * mse(norm(a_l) norm(c_l)^T, onehot(y))`` -- an example must be
    similar to its own class's feedback signal and dissimilar to the others, which trains both
    networks and rules out collapsing both to a constant. Inputs of every forward piece and every
    feedback layer are detached; the head learns by the task loss on the last block, detached.
    """

    def __init__(self, scale: float = 1.0) -> None:
        check(scale > 0, "ccl", "scale", scale, "expected > 0")
        self.scale = scale

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks = blocks_of(model, "ccl")
        require_kind(model, "ccl", CLASS_KINDS, "its feedback network carries class targets")
        base = unwrap(model)
        feedback = FeedbackNetwork(num_classes(model, "ccl"), base.backbone.dim, len(blocks))
        return MethodModel(model, {"feedback": feedback})

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        stem, targets = unwrap(model).stem, batch["targets"]
        with collect_aux_losses() as aux:
            outputs, pred, _ = detached_forward(model, batch["inputs"], detach_head=True)
            loss = objective.loss(pred, targets)
            signals = model.extras["feedback"]()
            local = sum(self.alignment(h, c, targets, stem) for h, c in zip(outputs, signals))
            total = loss + local + aux_total(aux, loss)
        return total, pred

    def alignment(self, h: Tensor, signal: Tensor, targets: Tensor, stem: nn.Module) -> Tensor:
        feats, labels = features(h, targets, stem)
        similarity = F.normalize(feats, dim=-1) @ F.normalize(signal, dim=-1).T  # [M, C]
        return self.scale * F.mse_loss(similarity, F.one_hot(labels, signal.shape[0]).to(similarity))
