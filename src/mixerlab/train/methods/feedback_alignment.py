"""Direct Feedback Alignment (arXiv:1609.01596; at scale, arXiv:2006.12878) for any block model.

Each piece of ``Model(stem, backbone, head)`` is trained from the output error alone:

- the head (and the backbone's final norm) by the true gradient of the loss, as in DFA's top layer;
- every block ``l`` (and the stem, ``l = 0``) by the pseudo-gradient ``B_l e`` at its output,
  where ``e = dL/dy`` is the error at the model's output and ``B_l`` a fixed random matrix.

Each block's input is detached, so no gradient flows from one block into another: a block's
update needs only its own input, its own output and the broadcast error (no weight transport,
no backward locking).

Shapes: output ``y`` and error ``e``: ``[B, T, V]`` (a token head: the error of each position goes
to that position) or ``[B, K]`` (a pooled head, ``K`` = classes or outputs: the same pseudo-
gradient goes to every token of the example); ``B_l: [K, D]``; block outputs ``[B, T, D]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import TrainingMethod, aux_total, blocks_of, detached_forward


@METHODS.register(
    "dfa",
    paper="Direct Feedback Alignment Provides Learning in Deep Neural Networks; "
    "Direct Feedback Alignment Scales to Modern Deep Learning Tasks and Architectures",
    arxiv="1609.01596",
    summary="Each block learns from the output error through its own fixed random matrix.",
    meta={"arxiv_also": ["2006.12878"]},
    test_kwargs={"seed": 0},
)
class DirectFeedbackAlignment(TrainingMethod):
    """Direct Feedback Alignment (arXiv:1609.01596, arXiv:2006.12878): ``delta_l = B_l e``, fixed ``B_l``.

    The matrices are drawn once from ``seed`` (``N(0, 1/K)`` entries, so ``B_l e`` has the scale of
    ``e``) when the size of the output is first seen, never trained and never changed; being a
    function of the seed they are the same after a resume.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.feedback: list[Tensor] = []  # B_0 (stem), B_1 .. B_L (blocks): [K, D] each
        self._outputs: list[Tensor] = []
        self._pred: Tensor | None = None

    def matrices(self, out_features: int, dim: int, count: int, device: torch.device) -> list[Tensor]:
        if not self.feedback or self.feedback[0].shape != (out_features, dim):
            g = torch.Generator().manual_seed(self.seed)
            self.feedback = [
                torch.randn(out_features, dim, generator=g) / out_features**0.5 for _ in range(count)
            ]
        self.feedback = [b.to(device) for b in self.feedback]
        return self.feedback

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        blocks_of(model, "dfa")
        with collect_aux_losses() as aux:
            outputs, pred, _ = detached_forward(model, batch["inputs"])
            loss = objective.loss(pred, batch["targets"])
            # Block-local extras (MoE balancing) stay within their block: inputs are detached.
            total = loss + aux_total(aux, loss)
        self._outputs, self._pred = outputs, pred
        return total, pred

    def backward(self, loss: Tensor, model: nn.Module, step: int) -> None:
        outputs, pred = self._outputs, self._pred
        self._outputs, self._pred = [], None
        # e = dL/dy: the error at the output, the only signal the blocks receive.
        (error,) = torch.autograd.grad(loss, pred, retain_graph=True)
        error = error.detach().float()
        h = outputs[0]
        per_token = error.dim() == 3 and error.shape[:2] == h.shape[:2]
        flat = error if per_token else error.reshape(len(error), -1)
        feedback = self.matrices(flat.shape[-1], h.shape[-1], len(outputs), h.device)
        grads = []
        for out, b in zip(outputs, feedback):
            delta = flat @ b  # [B, T, D] or [B, D]
            if not per_token:
                delta = delta[:, None, :].expand_as(out)
            grads.append(delta.to(out.dtype))
        torch.autograd.backward([loss, *outputs], [torch.ones_like(loss), *grads])
