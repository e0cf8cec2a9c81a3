"""Gated softmax attention: ``gated_attention`` (a sigmoid gate on each head's attention output).

Shapes: ``x: [B, T, D]``; queries and gates ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G``
key/value heads (grouped-query attention, arXiv:2305.13245); rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "gated_attention",
    paper="Gated Attention for Large Language Models: Non-linearity, Sparsity, and Attention-Sink-Free",
    arxiv="2505.06708",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T^2 D)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class GatedAttention(Attention):
    """Gated attention, "Gated Attention for Large Language Models" (arXiv:2505.06708).

    The paper's best variant (G1: after SDPA, elementwise, head-specific, query-dependent)::

        o_t^h = SDPA(q_t^h, K^h, V^h) * sigmoid(x_t W_g^h)      # one gate per head and channel
        y_t   = [o_t^1, ..., o_t^H] W_o

    Everything else is :class:`Attention` (rotary, grouped-query heads, the key/value cache as
    state, modes ``"sdpa"`` and ``"reference"``). The gate reads the layer input of the same
    token, so it needs no state of its own, and the non-causal form (``causal=False``: every
    position reads every other, no state, a padding mask hides padded keys) is Attention's with the
    same gate.
    """

    name: ClassVar[str] = "gated_attention"

    def _build_gate(self, dim: int, bias: bool) -> None:
        self.gate_proj = nn.Linear(dim, self.num_heads * self.head_dim, bias=bias)

    def _gate_heads(self, o: Tensor, x: Tensor) -> Tensor:
        gate = rearrange(self.gate_proj(x), "b t (h k) -> b t h k", h=self.num_heads)
        return o * torch.sigmoid(gate)
