"""Attention as a many-to-many RNN with learned queries: ``aaren``.

Shapes: ``x: [B, T, D]``; keys/values ``[B, T, H, K]``; one learned query per head ``[H, K]``; scores
``[B, T, H]``; state ``m, u: [B, H]``, ``w: [B, H, K]``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.aaren import aaren_recurrent, aaren_reference, aaren_scan
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "aaren",
    paper="Attention as an RNN",
    arxiv="2405.13956",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={"state": "H (K + 2)", "time": "O(T C D + T D^2)", "memory": "O(T D)", "state_kind": "fixed"},
)
class Aaren(TokenMixer):
    """Aaren, "Attention as an RNN" (arXiv:2405.13956).

    Each head ``h`` has a learned query ``q^h`` (a parameter, not a function of the input) and
    attends causally over the keys and values of the prefix::

        s_t^h = q^h . k_t^h / sqrt(K),   o_t^h = sum_{i<=t} softmax_i(s_i^h) v_i^h,   y_t = [o_t^1..o_t^H] W_o

    computed as the RNN ``(m, u, w) <- (max(m, s_t), u e^{m - m'} + e^{s_t - m'}, w e^{m - m'} +
    e^{s_t - m'} v_t)``, ``o_t = w / u``. The query being fixed, a head is a content-weighted
    running average: the keys decide how much each token counts, and the ``H`` heads (each with
    its own query) give ``H`` different weightings, mixed by ``W_o``; the block's residual path
    carries the current token. State: ``{"m", "u": [B, H], "w": [B, H, K]}``, fixed-size. Modes:
    ``"scan"`` (blocked prefix scan, no loop over time) and ``"reference"`` (the RNN).
    """

    modes = ("scan", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        chunk_size: int = 64,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "aaren"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_positive_int(name, "chunk_size", chunk_size)
        self.dim, self.num_heads, self.chunk_size = dim, num_heads, chunk_size
        K = self.head_dim
        self.query = nn.Parameter(torch.empty(num_heads, K))
        self.reset_parameters()  # drawn before the projections, as always: seeded weights unchanged
        self.kv_proj = nn.Linear(dim, 2 * num_heads * K, bias=bias)
        self.o_proj = nn.Linear(num_heads * K, dim, bias=bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The learned queries, ``N(0, 1)`` (the projections are ``nn.Linear``'s)."""
        self.query.copy_(torch.randn(self.query.shape, device=self.query.device))

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        k, v = rearrange(self.kv_proj(x), "b t (two h k) -> two b t h k", two=2, h=self.num_heads)
        s = torch.einsum("bthk,hk->bth", k, self.query) / math.sqrt(self.head_dim)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        m, u, w = state["m"], state["u"], state["w"]
        if x.shape[1] == 1:
            o, (m, u, w) = aaren_recurrent(s[:, 0], v[:, 0], m, u, w)
            o = o[:, None]
        elif self.mode == "reference":
            o, (m, u, w) = aaren_reference(s, v, m, u, w)
        else:
            o, (m, u, w) = aaren_scan(s, v, m, u, w, chunk_size=self.chunk_size)
        y = self.o_proj(rearrange(o, "b t h k -> b t (h k)"))
        return y, {"m": m, "u": u, "w": w}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, K = self.num_heads, self.head_dim
        # The lowest finite value stands for "no token yet": exp(m - m') is then exactly 0 without
        # the inf - inf of a -inf start.
        return {
            "m": torch.full((batch_size, H), torch.finfo(f["dtype"]).min, **f),
            "u": torch.zeros(batch_size, H, **f),
            "w": torch.zeros(batch_size, H, K, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * (self.head_dim + 2)
