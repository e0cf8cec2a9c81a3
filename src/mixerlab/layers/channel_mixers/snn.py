"""Self-normalising feed-forward ``selu``, "Self-Normalizing Neural Networks" (arXiv:1706.02515).

Shapes: ``x: [..., D] -> [..., H] -> [..., D]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.channel_mixers.mlp import hidden_width
from mixerlab.registry import CHANNEL_MIXERS


@CHANNEL_MIXERS.register(
    "selu",
    paper="Self-Normalizing Neural Networks",
    arxiv="1706.02515",
    test_kwargs={"dim": 8, "expand": 2},
)
class SelfNormalizingMLP(nn.Module):
    """Self-Normalizing Neural Networks (arXiv:1706.02515): ``y = W_2 alpha_drop(selu(W_1 x + b_1)) + b_2``.

    ``selu(x) = lambda x`` for ``x > 0`` and ``lambda alpha (e^x - 1)`` otherwise (``lambda ~ 1.0507``,
    ``alpha ~ 1.6733``); weights LeCun-normal (``N(0, 1 / fan_in)``), biases zero; alpha-dropout
    keeps mean and variance. Together these make zero mean / unit variance an attracting fixed point
    of the activations, which is the "normalisation".

    Registered as a channel mixer, not a norm: the fixed point needs the weight statistics (the
    LeCun init of a layer that follows), so a parameter-free ``selu`` in a norm slot would not
    normalise anything; the self-normalising unit is the weighted layer plus SELU.
    """

    def __init__(
        self, dim: int, expand: float = 4.0, hidden_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = hidden_width("selu", dim, expand, hidden_dim)
        check(0 <= dropout < 1, "selu", "dropout", dropout, "expected 0 <= dropout < 1")
        self.dim = dim
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.reset_parameters()
        self.act = nn.SELU()
        self.drop = nn.AlphaDropout(dropout)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """LeCun normal weights and zero biases: what keeps SELU activations self-normalising."""
        for layer in (self.up, self.down):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.drop(self.act(self.up(x))))
