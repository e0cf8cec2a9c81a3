"""Forgetting Transformer token mixer: ``fox`` (forgetting attention).

Shapes: ``x: [B, T, D]``; queries, keys, values ``[B, T, H, K]``; forget gates ``[B, T, H]``; state
``{"k", "v": [B, S, H, K], "log_f": [B, S, H]}`` (the key/value cache and each cached position's
log forget gate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.backends.fla_attention import check_attention_backend, fox_fla, use_fla_attention
from mixerlab.ops.fox import fox_parallel, fox_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "fox",
    paper="Forgetting Transformer: Softmax Attention with a Forget Gate",
    arxiv="2503.02130",
    test_kwargs={"dim": 16, "num_heads": 2},
    meta={
        "state": "T H (2 K + 1) (key/value cache and log forget gates)",
        "time": "O(T^2 D)",
        "memory": "O(T^2 H)",
        "state_kind": "growing",
    },
)
class ForgettingAttention(TokenMixer):
    """Forgetting attention, "Forgetting Transformer: Softmax Attention ..." (arXiv:2503.02130).

    Causal softmax attention whose scores are down-weighted by a data-dependent forget gate per
    head::

        f_t  = sigmoid(x_t w_f + b_f)                       ([H], one scalar per head)
        D_ij = sum_{l=j+1..i} log f_l
        o_i  = sum_{j<=i} softmax_j(q_i . k_j / sqrt(K) + D_ij) v_j,    out = o W_o

    No position embedding (the gate provides recency). This is the basic FoX layer; the paper's
    "Pro" block adds an output gate, QK-norm and short convolutions around it. The state is the
    key/value cache plus each cached position's ``log f`` (``D`` is recomputed from them, so a
    split call is the same computation as one call).

    Modes: ``"parallel"`` (one masked ``[T, S]`` score matrix per head,
    :func:`~mixerlab.ops.fox.fox_parallel`) and ``"reference"`` (per-query loop). ``backend``
    (``"auto"``, ``"torch"``, ``"fla"``): a parallel call from an empty cache runs on fla's
    ``parallel_forgetting_attn`` for CUDA inputs when installed (see
    :mod:`mixerlab.ops.backends.fla_attention`); decoding keeps mixerlab's form.
    """

    modes = ("parallel", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.head_dim = resolve_heads("fox", dim, num_heads, head_dim)
        check_attention_backend("fox", "fox", backend, self.head_dim)
        self.dim, self.num_heads, self.backend = dim, num_heads, backend
        HK = num_heads * self.head_dim
        self.q_proj = nn.Linear(dim, HK, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * HK, bias=bias)
        self.forget_proj = nn.Linear(dim, num_heads, bias=True)
        self.o_proj = nn.Linear(HK, dim, bias=bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        H = self.num_heads
        q = rearrange(self.q_proj(x), "b t (h k) -> b t h k", h=H)
        k, v = rearrange(self.kv_proj(x), "b t (two h k) -> two b t h k", two=2, h=H)
        log_f = F.logsigmoid(self.forget_proj(x))  # [B, T, H]
        cached = state["k"].shape[1]
        k = torch.cat([state["k"], k], dim=1)
        v = torch.cat([state["v"], v], dim=1)
        log_f = torch.cat([state["log_f"], log_f], dim=1)
        if self.mode == "reference":
            o = fox_reference(q, k, v, log_f)
        elif use_fla_attention("fox", "fox", self.backend, q, head_dim=self.head_dim, cached=cached):
            o = fox_fla(q, k, v, log_f)
        else:
            o = fox_parallel(q, k, v, log_f)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), {"k": k, "v": v, "log_f": log_f}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        factory = self._factory(device, dtype)
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, **factory)
        log_f = torch.zeros(batch_size, 0, self.num_heads, **factory)
        return {"k": empty, "v": empty.clone(), "log_f": log_f}

    def state_size(self, seq_len: int) -> int:
        return seq_len * self.num_heads * (2 * self.head_dim + 1)
