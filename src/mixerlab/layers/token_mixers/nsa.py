"""Native Sparse Attention: ``nsa`` (compressed, selected and sliding-window branches, gated).

Shapes: ``x: [B, T, D]``; queries, keys and values ``[B, T, H, K]``; compressed blocks
``[B, T // l, H, K]``; branch gates ``[B, T, H, 3]``; rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.nsa import nsa_parallel, nsa_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "nsa",
    paper="Native Sparse Attention: Hardware-Aligned and Natively Trainable Sparse Attention",
    arxiv="2502.11089",
    test_kwargs={"dim": 16, "num_heads": 4, "block_size": 6, "num_selected": 3, "window": 5},
    meta={
        "state": "2 T H K (key/value cache; compressed blocks recomputed from it)",
        "time": "O(T (T / l + n l + w) D) (here O(T^2 D), masked calls)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class NativeSparseAttention(Attention):
    """Native Sparse Attention, NSA (arXiv:2502.11089).

    Three attention branches over the same keys and values, combined per head by learned sigmoid
    gates ``g_t = sigmoid(W_g x_t)`` (:mod:`mixerlab.ops.nsa`): compressed blocks (each complete
    block of ``block_size`` keys/values pooled by learned per-head weights into one), the
    ``num_selected`` blocks with the highest compressed-attention score plus the query's own block,
    and a sliding ``window``. Simplifications of the paper: compression and selection blocks share
    one size and stride, the compression is a learned weighted sum (the paper's MLP with block
    position encoding), one key/value head per query head, and the initial and local blocks are
    not forced into the selection (the window covers the local ones). The state is the key/value
    cache (rotated keys): compressed blocks are recomputed from it, so split calls and decoding
    equal one call. Causal by design (bidirectional wrapper for non-causal mixing); packed
    documents run one at a time. Modes: ``parallel`` (masked calls), ``reference``.
    """

    name: ClassVar[str] = "nsa"
    modes = ("parallel", "reference")
    noncausal = "bidirectional"
    packed = "split"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        block_size: int = 32,
        num_selected: int = 4,
        window: int = 128,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
    ) -> None:
        for field, value in (("block_size", block_size), ("num_selected", num_selected), ("window", window)):
            check_positive_int(self.name, field, value)
        super().__init__(dim, num_heads, None, head_dim, rotary_base, bias, causal=True)
        self.block_size, self.num_selected, self.window = block_size, num_selected, window
        self.gate_proj = nn.Linear(dim, 3 * num_heads, bias=True)
        self.compress_k = nn.Parameter(torch.empty(num_heads, block_size))  # [H, l]
        self.compress_v = nn.Parameter(torch.empty(num_heads, block_size))  # [H, l]
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # start as block means, the paper's pooling at initialisation up to its MLP
        nn.init.constant_(self.compress_k, 1.0 / self.block_size)
        nn.init.constant_(self.compress_v, 1.0 / self.block_size)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        gates = torch.sigmoid(rearrange(self.gate_proj(x), "b t (h c) -> b t h c", c=3))
        fn = nsa_reference if self.mode == "reference" else nsa_parallel
        o = fn(
            q,
            k,
            v,
            gates,
            self.compress_k,
            self.compress_v,
            block_size=self.block_size,
            num_selected=self.num_selected,
            window=self.window,
        )
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)"))

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        return TokenMixer.forward_packed(self, x, cu_seqlens, states=states)
