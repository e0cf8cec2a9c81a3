"""Low-rank factorised multi-head attention: ``lowrank_attention`` (every projection ``W = U V``).

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G`` key/value
heads (grouped-query attention, arXiv:2305.13245); rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.registry import TOKEN_MIXERS


class LowRankLinear(nn.Sequential):
    """``x -> x V^T U^T``: a ``[in, out]`` map of rank at most ``rank`` (``in -> rank -> out``)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool) -> None:
        super().__init__(nn.Linear(in_features, rank, bias=False), nn.Linear(rank, out_features, bias=bias))
        self.in_features, self.out_features, self.rank = in_features, out_features, rank

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)


@TOKEN_MIXERS.register(
    "lowrank_attention",
    paper="Low Rank Factorization for Compact Multi-Head Self-Attention",
    arxiv="1912.00835",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2, "rank": 5},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T^2 D + T D r)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class LowRankAttention(Attention):
    """Low-rank factorised attention, after "Low Rank Factorization for ..." (arXiv:1912.00835).

    The paper's saving is a low-rank factorisation of the attention's parameter matrices, shared
    by the heads, in place of full per-head maps. Written as a causal token mixer, each of the
    query, key/value and output projections is ``W = U V`` with ``V: [rank, in]`` and
    ``U: [out, rank]`` (:class:`LowRankLinear`): ``2 rank (in + out)`` parameters instead of
    ``in out``, and the bilinear affinity ``x_t W_q^T W_k x_s`` has rank at most ``rank``. The
    paper's pooling against a global context vector is a read-out, not a token mixer; it is the
    ``attentive_pool`` head. Everything else is :class:`Attention` (rotary, grouped-query heads,
    key/value cache, modes ``sdpa`` and ``reference``, ``causal=False``, packed documents); with
    ``rank >= min(in, out)`` the layer can hold any dense attention's weights.
    """

    name: ClassVar[str] = "lowrank_attention"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        rank: int = 16,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
        causal: bool = True,
    ) -> None:
        check_positive_int(self.name, "rank", rank)
        # Attention's dense projections are replaced below: built on meta, they draw no weights
        with torch.device("meta"):
            super().__init__(dim, num_heads, num_kv_heads, head_dim, rotary_base, bias, causal)
        self.rank = rank
        inner = self.num_heads * self.head_dim
        self.q_proj = LowRankLinear(dim, inner, rank, bias)
        self.kv_proj = LowRankLinear(dim, 2 * self.num_kv_heads * self.head_dim, rank, bias)
        self.o_proj = LowRankLinear(inner, dim, rank, bias)
