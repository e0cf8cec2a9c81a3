"""Structured feed-forward layers ``lowrank_mlp`` and ``blockdiag_mlp``, "Building on Efficient
Foundations: Effectively Training LLMs with Structured Feedforward Layers" (arXiv:2406.16450).

Shapes: ``x: [..., D]``, hidden ``[..., H]``; low-rank factors ``[D, R] [R, H]``; block-diagonal
weights ``[nb, D / nb, H / nb]`` (``nb`` blocks).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_divisible, check_positive_int
from mixerlab.layers.channel_mixers.mlp import ACTIVATIONS, hidden_width
from mixerlab.registry import CHANNEL_MIXERS


class LowRankLinear(nn.Module):
    """``y = (x U) V + b`` with ``U: [I, R]``, ``V: [R, O]``: ``R (I + O)`` weights instead of ``I O``."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.empty(in_features, rank))
        self.v = nn.Parameter(torch.empty(rank, out_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        (fan_in, rank), dev = self.u.shape, self.u.device
        self.u.copy_(torch.randn(fan_in, rank, device=dev) / math.sqrt(fan_in))
        self.v.copy_(torch.randn(self.v.shape, device=dev) / math.sqrt(rank))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def merged_weight(self) -> Tensor:
        """The dense ``[I, O]`` product (the paper's "pre-merge" for decoding with few tokens)."""
        return self.u @ self.v

    def forward(self, x: Tensor) -> Tensor:
        y = (x @ self.u) @ self.v
        return y if self.bias is None else y + self.bias


@CHANNEL_MIXERS.register(
    "lowrank_mlp",
    paper="Building on Efficient Foundations: Effectively Training LLMs with Structured Feedforward Layers",
    arxiv="2406.16450",
    test_kwargs={"dim": 8, "expand": 2, "rank": 3},
    meta={"params": "R (D + H) * 2"},
)
class LowRankMLP(nn.Module):
    """Structured Feedforward Layers (arXiv:2406.16450): the MLP with low-rank weights.

    ``y = V_2^T U_2^T act(V_1^T U_1^T x)`` i.e. ``W_1 = U_1 V_1``, ``W_2 = U_2 V_2`` of rank ``R``
    (``rank``, or ``rank_ratio * min(D, H)``; the paper sweeps ratios, 0.5 is a middle setting). The
    paper's self-guided training (a dense path annealed away early) is a training-method plug-in,
    not part of this layer.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4.0,
        hidden_dim: int | None = None,
        rank: int | None = None,
        rank_ratio: float = 0.5,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        hidden = hidden_width("lowrank_mlp", dim, expand, hidden_dim)
        check_choice("lowrank_mlp", "activation", activation, tuple(ACTIVATIONS))
        if rank is None:
            check(0 < rank_ratio <= 1, "lowrank_mlp", "rank_ratio", rank_ratio, "expected in (0, 1]")
            rank = max(1, round(rank_ratio * min(dim, hidden)))
        check_positive_int("lowrank_mlp", "rank", rank)
        self.dim, self.rank = dim, rank
        self.up = LowRankLinear(dim, hidden, rank)
        self.act = ACTIVATIONS[activation]()
        self.down = LowRankLinear(hidden, dim, rank)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))


class BlockDiagonalLinear(nn.Module):
    """``y[b] = x[b] W_b + bias`` for ``nb`` independent blocks: ``I O / nb`` weights."""

    def __init__(self, in_features: int, out_features: int, num_blocks: int) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        block_in = in_features // num_blocks
        self.weight = nn.Parameter(torch.empty(num_blocks, block_in, out_features // num_blocks))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        block_in = self.weight.shape[1]
        self.weight.copy_(torch.randn(self.weight.shape, device=self.weight.device) / math.sqrt(block_in))
        nn.init.zeros_(self.bias)

    def dense_weight(self) -> Tensor:
        """The equivalent dense ``[I, O]`` matrix (zeros off the diagonal blocks)."""
        return torch.block_diag(*self.weight.unbind(0))

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        # One batched matmul over blocks: [nb, N, i] @ [nb, i, o] (a per-token broadcast matmul would
        # launch N tiny products).
        xb = rearrange(x.reshape(-1, x.shape[-1]), "n (nb i) -> nb n i", nb=self.num_blocks)
        y = rearrange(torch.bmm(xb, self.weight), "nb n o -> n (nb o)")
        return (y + self.bias).reshape(*lead, -1)


@CHANNEL_MIXERS.register(
    "blockdiag_mlp",
    paper="Building on Efficient Foundations: Effectively Training LLMs with Structured Feedforward Layers",
    arxiv="2406.16450",
    test_kwargs={"dim": 8, "expand": 2, "num_blocks": 2},
    meta={"params": "2 D H / nb"},
)
class BlockDiagonalMLP(nn.Module):
    """Structured Feedforward Layers (arXiv:2406.16450): the MLP with block-diagonal weights.

    ``y = B_2 shuffle(act(B_1 x))`` with block-diagonal ``B_1: D -> H`` and ``B_2: H -> D`` of
    ``num_blocks`` blocks each. Two block-diagonal maps alone would never mix channels of different
    blocks, so the hidden channels are shuffled between them (``[nb, H / nb] -> [H / nb, nb]``), the
    block-shuffle structure of the paper (as in ShuffleNet/Monarch): every output block then sees
    every input block.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4.0,
        hidden_dim: int | None = None,
        num_blocks: int = 4,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        hidden = hidden_width("blockdiag_mlp", dim, expand, hidden_dim)
        check_positive_int("blockdiag_mlp", "num_blocks", num_blocks)
        check_divisible("blockdiag_mlp", "dim", dim, "num_blocks", num_blocks)
        check_divisible("blockdiag_mlp", "hidden_dim", hidden, "num_blocks", num_blocks)
        check_choice("blockdiag_mlp", "activation", activation, tuple(ACTIVATIONS))
        self.dim, self.num_blocks = dim, num_blocks
        self.up = BlockDiagonalLinear(dim, hidden, num_blocks)
        self.act = ACTIVATIONS[activation]()
        self.down = BlockDiagonalLinear(hidden, dim, num_blocks)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.up(x))
        h = rearrange(h, "... (nb c) -> ... (c nb)", nb=self.num_blocks)
        return self.down(h)
