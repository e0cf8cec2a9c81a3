"""Gated linear units, "GLU Variants Improve Transformer" (arXiv:2002.05202).

``y = W_down (act(W_gate x) * (W_up x))``; shapes ``x: [..., D] -> [..., D]``, hidden width ``H``.
The default width ``expand = 8/3`` keeps the parameter count of a 4x MLP, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mixerlab.layers.channel_mixers.mlp import hidden_width
from mixerlab.registry import CHANNEL_MIXERS

_GATES: dict[str, Callable[[Tensor], Tensor]] = {
    "swiglu": nn.functional.silu,
    "geglu": nn.functional.gelu,
    "reglu": torch.relu,
}


class GLU(nn.Module):
    """Gated linear unit feed-forward, "GLU Variants Improve Transformer" (arXiv:2002.05202)."""

    def __init__(
        self, gate: str, dim: int, expand: float = 8 / 3, hidden_dim: int | None = None, bias: bool = False
    ):
        super().__init__()
        hidden = hidden_width(gate, dim, expand, hidden_dim)
        self.dim = dim
        self.gate_fn = _GATES[gate]
        # One matmul for gate and up: [D] -> [2H].
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.gate_fn(gate) * up)


def _register(name: str, act: str) -> None:
    def build(dim: int, expand: float = 8 / 3, hidden_dim: int | None = None, bias: bool = False) -> GLU:
        return GLU(name, dim, expand=expand, hidden_dim=hidden_dim, bias=bias)

    build.__doc__ = f'{act}-gated GLU feed-forward, "GLU Variants Improve Transformer" (arXiv:2002.05202).'
    build.__name__ = name
    CHANNEL_MIXERS.register(
        name, paper="GLU Variants Improve Transformer", arxiv="2002.05202", test_kwargs={"dim": 8}
    )(build)


for _name, _act in (("swiglu", "Swish"), ("geglu", "GELU"), ("reglu", "ReLU")):
    _register(_name, _act)
