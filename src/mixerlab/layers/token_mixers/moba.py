"""Mixture of block attention: ``moba`` (each query reads its own block and its top-k earlier blocks).

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G`` key/value
heads (grouped-query attention, arXiv:2305.13245); rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

from typing import ClassVar

from einops import rearrange
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.moba import moba_parallel, moba_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "moba",
    paper="MoBA: Mixture of Block Attention for Long-Context LLMs",
    arxiv="2502.13189",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2, "block_size": 8, "top_k": 2},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T (top_k + 1) block_size D) (here O(T^2 D), one masked call)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class MixtureOfBlockAttention(Attention):
    """Mixture of block attention, MoBA (arXiv:2502.13189).

    Keys are cut into blocks of ``block_size`` positions; each query reads its own block causally
    and the ``top_k`` earlier blocks ranked by ``q . mean(K_block)`` (a parameter-free gate),
    all under one softmax (:mod:`mixerlab.ops.moba`). With ``top_k`` covering every block it is
    causal softmax attention. The state is :class:`Attention`'s key/value cache (rotated keys),
    from which the gates of later queries are recomputed, so split calls and decoding equal one
    call. Causal by design (the gate ranks *earlier* blocks): the non-causal form is the generic
    bidirectional wrapper; packed documents run one at a time. Modes: ``parallel`` (one masked
    SDPA call), ``reference`` (the per-query loop).
    """

    name: ClassVar[str] = "moba"
    modes = ("parallel", "reference")
    noncausal = "bidirectional"
    packed = "split"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        block_size: int = 64,
        top_k: int = 3,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
    ) -> None:
        check_positive_int(self.name, "block_size", block_size)
        check(isinstance(top_k, int) and top_k >= 0, self.name, "top_k", top_k, "expected an int >= 0")
        super().__init__(dim, num_heads, num_kv_heads, head_dim, rotary_base, bias, causal=True)
        self.block_size, self.top_k = block_size, top_k

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        fn = moba_reference if self.mode == "reference" else moba_parallel
        o = fn(q, k, v, block_size=self.block_size, top_k=self.top_k)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)"))

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        return TokenMixer.forward_packed(self, x, cu_seqlens, states=states)
