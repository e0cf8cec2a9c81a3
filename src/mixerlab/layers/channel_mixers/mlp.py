"""Position-wise MLPs: ``mlp`` (two layers with an activation) and ``identity``.

Shapes: ``x: [..., D] -> [..., D]``; hidden width ``H = hidden_dim or expand * D``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.registry import CHANNEL_MIXERS

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def hidden_width(owner: str, dim: int, expand: float, hidden_dim: int | None) -> int:
    """Resolve the hidden width from ``hidden_dim`` or ``expand * dim``, validating both."""
    check_positive_int(owner, "dim", dim)
    if hidden_dim is not None:
        check_positive_int(owner, "hidden_dim", hidden_dim)
        return hidden_dim
    check(expand > 0, owner, "expand", expand, "expected > 0")
    return max(1, round(expand * dim))


@CHANNEL_MIXERS.register(
    "mlp",
    paper="Attention Is All You Need (position-wise feed-forward)",
    arxiv="1706.03762",
    test_kwargs={"dim": 8},
)
class MLP(nn.Module):
    """Position-wise feed-forward network, "Attention Is All You Need" (arXiv:1706.03762).

    ``y = W2 act(W1 x + b1) + b2`` with ``W1: [H, D]``, ``W2: [D, H]``.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4,
        hidden_dim: int | None = None,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = hidden_width("mlp", dim, expand, hidden_dim)
        check_choice("mlp", "activation", activation, tuple(ACTIVATIONS))
        check(0 <= dropout < 1, "mlp", "dropout", dropout, "expected 0 <= dropout < 1")
        self.dim = dim
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.drop(self.act(self.up(x))))


@CHANNEL_MIXERS.register(
    "identity", summary="No channel mixing: the block has a token mixer only.", test_kwargs={"dim": 8}
)
class Identity(nn.Module):
    """No channel mixer. A :class:`~mixerlab.layers.block.Block` given this drops its second sub-layer."""

    has_parameters = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        check_positive_int("identity", "dim", dim)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x
