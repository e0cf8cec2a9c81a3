"""Gated softmax attention: ``gated_attention`` (a sigmoid gate on each head's attention output).

Shapes: ``x: [B, T, D]``; queries and gates ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G``
key/value heads (grouped-query attention, arXiv:2305.13245); rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.attention import attention_parallel, attention_reference
from mixerlab.ops.rotary import rotary
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
class GatedAttention(TokenMixer):
    """Gated attention, "Gated Attention for Large Language Models" (arXiv:2505.06708).

    The paper's best variant (G1: after SDPA, elementwise, head-specific, query-dependent)::

        o_t^h = SDPA(q_t^h, K^h, V^h) * sigmoid(x_t W_g^h)      # one gate per head and channel
        y_t   = [o_t^1, ..., o_t^H] W_o

    SDPA is causal softmax attention with rotary positions and ``num_kv_heads`` shared key/value
    heads. The gate reads the layer input of the same token, so it needs no state of its own:
    the state is the key/value cache ``{"k", "v": [B, S, G, K]}`` (keys cached after rotation).
    Modes: ``"sdpa"`` (fused kernel) and ``"reference"`` (per-query loop).
    """

    modes = ("sdpa", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "gated_attention"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        check_positive_int(name, "num_kv_heads", num_kv_heads)
        check_divisible(name, "num_heads", num_heads, "num_kv_heads", num_kv_heads)
        check(
            rotary_base is None or rotary_base > 0, name, "rotary_base", rotary_base, "expected > 0 or None"
        )
        self.dim, self.num_heads, self.num_kv_heads, self.rotary_base = (
            dim,
            num_heads,
            num_kv_heads,
            rotary_base,
        )
        K = self.head_dim
        # Queries and gates come from one matmul: both are per query head.
        self.q_gate_proj = nn.Linear(dim, 2 * num_heads * K, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * num_kv_heads * K, bias=bias)
        self.o_proj = nn.Linear(num_heads * K, dim, bias=bias)

    def _rotate(self, t: Tensor, start: int) -> Tensor:
        if self.rotary_base is None:
            return t
        positions = torch.arange(start, start + t.shape[1], device=t.device)
        return rotary(t, positions, self.rotary_base)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        q, gate = rearrange(self.q_gate_proj(x), "b t (two h k) -> two b t h k", two=2, h=self.num_heads)
        k, v = rearrange(self.kv_proj(x), "b t (two g k) -> two b t g k", two=2, g=self.num_kv_heads)
        past = 0 if state is None else state["k"].shape[1]
        q, k = self._rotate(q, past), self._rotate(k, past)
        if state is not None:
            k = torch.cat([state["k"], k], dim=1)
            v = torch.cat([state["v"], v], dim=1)
        op = attention_reference if self.mode == "reference" else attention_parallel
        o = op(q, k, v) * torch.sigmoid(gate)  # [B, T, H, K]
        return self.o_proj(rearrange(o, "b t h k -> b t (h k)")), {"k": k, "v": v}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        empty = torch.zeros(batch_size, 0, self.num_kv_heads, self.head_dim, **self._factory(device, dtype))
        return {"k": empty, "v": empty.clone()}

    def state_size(self, seq_len: int) -> int:
        return 2 * seq_len * self.num_kv_heads * self.head_dim
