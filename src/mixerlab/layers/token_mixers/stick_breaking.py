"""Stick-breaking attention token mixer: ``stick_breaking``.

Shapes: ``x: [B, T, D]``; queries, keys, values ``[B, T, H, K]``; state ``{"k", "v": [B, S, H, K]}``
(the key/value cache).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.backends.fla_attention import check_attention_backend, stick_breaking_fla, use_fla_attention
from mixerlab.ops.stick_breaking import stick_breaking_parallel, stick_breaking_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "stick_breaking",
    paper="Scaling Stick-Breaking Attention: An Efficient Implementation and In-depth Study",
    arxiv="2410.17980",
    test_kwargs={"dim": 16, "num_heads": 2},
    meta={
        "state": "2 T H K (key/value cache)",
        "time": "O(T^2 D)",
        "memory": "O(T^2 H)",
        "state_kind": "growing",
    },
)
class StickBreakingAttention(TokenMixer):
    """Stick-breaking attention, "Scaling Stick-Breaking Attention ..." (arXiv:2410.17980).

    Softmax replaced by a stick-breaking process over the keys, nearest first::

        beta_ij = sigmoid(q_i . k_j / sqrt(K))
        A_ij    = beta_ij prod_{j<k<=i} (1 - beta_ik),      o_i = sum_{j<=i} A_ij v_j,   out = o W_o

    computed in log space. The weights of a query sum to at most one and favour recent keys, so no
    position embedding is used (the paper's point). State: the key/value cache.

    Modes: ``"parallel"`` (one masked ``[T, S]`` matrix per head with a reverse cumulative sum,
    :func:`~mixerlab.ops.stick_breaking.stick_breaking_parallel`) and ``"reference"`` (per-query loop).
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): a parallel call from an empty cache runs on
    fla's ``parallel_stickbreaking_attn`` for CUDA inputs when installed (see
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
        name = "stick_breaking"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_attention_backend(name, name, backend, self.head_dim)
        self.dim, self.num_heads, self.backend = dim, num_heads, backend
        HK = num_heads * self.head_dim
        self.q_proj = nn.Linear(dim, HK, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * HK, bias=bias)
        self.o_proj = nn.Linear(HK, dim, bias=bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        H = self.num_heads
        q = rearrange(self.q_proj(x), "b t (h k) -> b t h k", h=H)
        k, v = rearrange(self.kv_proj(x), "b t (two h k) -> two b t h k", two=2, h=H)
        cached = 0 if state is None else state["k"].shape[1]
        if state is not None:
            k = torch.cat([state["k"], k], dim=1)
            v = torch.cat([state["v"], v], dim=1)
        name = "stick_breaking"
        if self.mode == "reference":
            o = stick_breaking_reference(q, k, v)
        elif use_fla_attention(name, name, self.backend, q, head_dim=self.head_dim, cached=cached):
            o = stick_breaking_fla(q, k, v)
        else:
            o = stick_breaking_parallel(q, k, v)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), {"k": k, "v": v}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, **self._factory(device, dtype))
        return {"k": empty, "v": empty.clone()}

    def state_size(self, seq_len: int) -> int:
        return 2 * seq_len * self.num_heads * self.head_dim
