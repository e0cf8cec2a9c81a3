"""PaTH attention (``path``): softmax attention with Householder position transforms (arXiv:2505.16381).

Shapes: ``x: [B, T, D]``; queries/keys/directions ``[B, T, H, K]``; values ``[B, T, H, K]``;
``beta: [B, T, H]``; state: the transformed keys ``k: [B, S, H, K]``, values ``v: [B, S, H, K]``
and the direction short-conv tail ``conv: [B, W-1, H K]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.short_conv import ShortConv
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.backends.fla_attention import check_attention_backend, path_fla, use_fla_attention
from mixerlab.ops.path import path_chunk, path_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "path",
    paper="PaTH Attention: Position Encoding via Accumulating Householder Transformations",
    arxiv="2505.16381",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "2 T H K (transformed keys, values) + (W-1) H K (conv tail)",
        "time": "O(T^2 D + T^2 D K / (H C)) chunked (C = chunk_size)",
        "memory": "O(T^2 H + T^2 D / C)",
        "state_kind": "growing",
    },
)
class PaTHAttention(TokenMixer):
    """PaTH, "PaTH Attention: Position Encoding via Accumulating Householder ..." (arXiv:2505.16381).

    Softmax attention whose position encoding is the product of data-dependent Householder-like
    transforms between key and query (in place of RoPE)::

        q, k, v  = W_q x, W_k x, W_v x;   w_t = L2norm(SiLU(conv(W_w x))_t);   beta_t = 2 sigmoid(.)
        H_t      = I - beta_t w_t w_t^T
        o_t      = sum_{i<=t} softmax_i(q_t^T H_t H_{t-1} ... H_{i+1} k_i / sqrt(K)) v_i

    ``beta in (0, 2)`` lets ``H_t`` reach a reflection (negative eigenvalue). The state is the
    paper's decoding cache: keys already multiplied by every later ``H`` (one rank-one update per
    new token), the values, and the short-conv tail of ``w``. The fast form is the paper's
    blockwise algorithm (``ops.path.chunk``): UT-transform products of Householders per chunk,
    the cache advanced chunk by chunk. ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): a chunk
    call from an empty cache runs on fla's ``parallel_path_attn`` for CUDA inputs when installed
    (head sizes 16 to 128, see :mod:`mixerlab.ops.backends.fla_attention`); decoding keeps
    mixerlab's form.
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        conv_size: int | None = 4,
        chunk_size: int = 64,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "path"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_attention_backend(name, name, backend, self.head_dim)
        self.backend = backend
        check_positive_int(name, "chunk_size", chunk_size)
        check(
            conv_size is None or (isinstance(conv_size, int) and conv_size >= 2),
            name,
            "conv_size",
            conv_size,
            "expected an integer >= 2, or None to disable the short convolution on w",
        )
        self.dim, self.num_heads, self.conv_size, self.chunk_size = dim, num_heads, conv_size, chunk_size
        H, K = num_heads, self.head_dim
        self.qkvw_proj = nn.Linear(dim, 4 * H * K, bias=False)
        self.b_proj = nn.Linear(dim, H, bias=False)
        if conv_size is not None:
            self.conv = ShortConv(H * K, conv_size, bias=False, owner=name)
        self.o_proj = nn.Linear(H * K, dim, bias=False)

    def reset_parameters(self) -> None:
        """No parameters of its own: the linear layers and the conv initialise themselves."""

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        H = self.num_heads
        state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype) if state is None else state
        q, k, v, w = self.qkvw_proj(x).chunk(4, dim=-1)
        new_state: State = {}
        if self.conv_size is not None:
            w, new_state["conv"] = self.conv(w, state["conv"], reference=self.mode == "reference")
        w = F.normalize(F.silu(rearrange(w, "b t (h k) -> b t h k", h=H)), dim=-1)
        q, k, v = (rearrange(t, "b t (h k) -> b t h k", h=H) for t in (q, k, v))
        beta = 2.0 * torch.sigmoid(self.b_proj(x))
        cached = state["k"].shape[1]
        if self.mode == "reference":
            o, keys, values = path_reference(q, k, v, w, beta, state["k"], state["v"])
        elif use_fla_attention("path", "path", self.backend, q, head_dim=self.head_dim, cached=cached):
            o, keys, values = path_fla(q, k, v, w, beta)
        else:
            o, keys, values = path_chunk(q, k, v, w, beta, state["k"], state["v"], chunk_size=self.chunk_size)
        new_state.update(k=keys, v=values)
        return self.o_proj(rearrange(o, "b t h k -> b t (h k)")), new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, **f)
        state: State = {"k": empty, "v": empty.clone()}
        if self.conv_size is not None:
            state["conv"] = self.conv.init_state(batch_size, **f)
        return state

    def state_size(self, seq_len: int) -> int:
        conv = 0 if self.conv_size is None else self.conv.state_size()
        return 2 * seq_len * self.num_heads * self.head_dim + conv
