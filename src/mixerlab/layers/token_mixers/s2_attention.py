"""Shifted sparse attention with sink tokens: ``s2_attention`` (SinkLoRA on LongLoRA's S²-Attn).

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
from mixerlab.ops.s2_attention import s2_attention_parallel, s2_attention_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "s2_attention",
    paper="SinkLoRA: Enhanced Efficiency and Chat Capabilities for Long-Context LLMs (S2-Attn + sinks)",
    arxiv="2406.05678",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2, "group_size": 6, "num_sinks": 2},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T g D) (here O(T^2 D), one masked call)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class ShiftedSparseAttention(Attention):
    """Shifted sparse attention with sink tokens, SinkLoRA (arXiv:2406.05678) on LongLoRA's S²-Attn.

    Each query reads, causally, the keys of its own group of ``group_size`` positions; half the
    heads use groups shifted by ``group_size / 2`` so that neighbouring groups exchange
    information (LongLoRA, arXiv:2309.12307), and every query also reads the first ``num_sinks``
    tokens, the global sink tokens SinkLoRA adds (:mod:`mixerlab.ops.s2_attention`). The state is
    :class:`Attention`'s key/value cache (the groups and sinks are positions in it, so split calls
    and decoding equal one call). Causal: the non-causal form is the bidirectional wrapper;
    packed documents run one at a time. Modes: ``parallel`` (one masked SDPA call), ``reference``.
    """

    name: ClassVar[str] = "s2_attention"
    modes = ("parallel", "reference")
    noncausal = "bidirectional"
    packed = "split"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        group_size: int = 64,
        num_sinks: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
    ) -> None:
        check_positive_int(self.name, "group_size", group_size)
        check(group_size % 2 == 0, self.name, "group_size", group_size, "expected an even number (shift g/2)")
        check(
            isinstance(num_sinks, int) and num_sinks >= 0,
            self.name,
            "num_sinks",
            num_sinks,
            "expected an int >= 0",
        )
        super().__init__(dim, num_heads, num_kv_heads, head_dim, rotary_base, bias, causal=True)
        self.group_size, self.num_sinks = group_size, num_sinks

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        fn = s2_attention_reference if self.mode == "reference" else s2_attention_parallel
        o = fn(q, k, v, group_size=self.group_size, num_sinks=self.num_sinks)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)"))

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        return TokenMixer.forward_packed(self, x, cu_seqlens, states=states)
