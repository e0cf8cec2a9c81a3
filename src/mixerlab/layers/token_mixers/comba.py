"""Comba (``comba``): a bilinear RNN with a scalar-plus-low-rank transition (arXiv:2506.02475).

Shapes: ``x: [B, T, D]``; queries/keys ``[B, T, H, K]``; values ``[B, T, H, V]``; per-head
``beta, g: [B, T, H]``; recurrent state ``[B, H, K, V]``; short-conv tail ``[B, W-1, C]`` over the
concatenated ``q, k, v`` channels ``C = H (2K + V)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.short_conv import ShortConv
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.layers.token_mixers.delta import DeltaState, check_delta_options
from mixerlab.ops.backends.fla import check_backend, comba_fla, use_fla
from mixerlab.ops.comba import comba_chunk, comba_recurrent, comba_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "comba",
    paper="Comba: Improving Bilinear RNNs with Closed-loop Control",
    arxiv="2506.02475",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V + (W-1) H (2K + V) (conv tail), V = expand K",
        "time": "O(T C D K / H + T D^2 / H) chunked (C = chunk_size)",
        "memory": "O(T C D)",
        "state_kind": "fixed",
    },
)
class Comba(DeltaState, TokenMixer):
    """Comba, "Comba: Improving Bilinear RNNs with Closed-loop Control" (arXiv:2506.02475).

    A scalar-plus-low-rank (SPLR) transition whose rank-one read uses a key ``p_t`` shrunk from
    the write key, and an output correction that subtracts ``d p_t`` from the query::

        q_t, k_t = L2norm(SiLU(conv(W_q x)_t)), L2norm(SiLU(conv(W_k x)_t)),  v_t = SiLU(conv(W_v x)_t)
        p_t      = sigmoid(c) k_t,   alpha_t = exp(-exp(A_log) softplus(w_a . x_t + dt_bias)),
        beta_t   = sigmoid(w_beta . x_t)
        S_t      = alpha_t (I - beta_t k_t p_t^T) S_{t-1} + beta_t k_t v_t^T
        o_t      = RMSNorm(S_t^T (q_t - d p_t) / sqrt(K)) * sigmoid(W_g x_t)

    with per-head learnable ``c`` (the inner decay, so ``p^T k < 1``) and ``d`` (the correction
    factor, 1 at init as Mamba-2's ``D``; the authors note 0.02 sometimes works better for small
    models). Values are ``expand=2`` times wider than keys. The fast form is the chunked
    diagonal-plus-rank-one UT transform shared with ``rwkv7`` (``ops.rwkv7.chunk``).
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): the chunk mode runs on fla's ``chunk_comba``
    for CUDA inputs when installed (see :mod:`mixerlab.ops.backends.fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        expand: int = 2,
        conv_size: int | None = 4,
        chunk_size: int = 16,
        correction_factor: float = 1.0,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "comba"
        check_backend(name, backend)
        self.backend = backend
        self.head_dim = check_delta_options(
            name, dim, num_heads, head_dim, expand, conv_size, chunk_size, norm_eps
        )
        check(
            isinstance(correction_factor, (int, float)) and math.isfinite(correction_factor),
            name,
            "correction_factor",
            correction_factor,
            "expected a finite number",
        )
        self.dim, self.num_heads, self.value_dim = dim, num_heads, expand * self.head_dim
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.correction_factor, self.norm_eps = float(correction_factor), norm_eps
        H, K, V = num_heads, self.head_dim, self.value_dim
        self.qkv_proj = nn.Linear(dim, H * (2 * K + V), bias=False)
        if conv_size is not None:
            self.conv = ShortConv(H * (2 * K + V), conv_size, bias=False, owner=name)
        self.a_proj = nn.Linear(dim, H, bias=False)
        self.b_proj = nn.Linear(dim, H, bias=False)
        self.g_proj = nn.Linear(dim, H * V, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.inner_decay = nn.Parameter(torch.empty(H))
        self.D = nn.Parameter(torch.empty(H))
        self.norm_weight = nn.Parameter(torch.empty(V))
        self.o_proj = nn.Linear(H * V, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2's decay init; inner decay ``c = 1`` (``p = 0.73 k``); ``d = correction_factor``."""
        nn.init.ones_(self.norm_weight)
        nn.init.ones_(self.inner_decay)
        self.D.fill_(self.correction_factor)
        self.A_log.copy_(torch.log(torch.empty_like(self.A_log).uniform_(1.0, 16.0)))
        dt = torch.exp(torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(0.1))).clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)

    def _inputs(self, x: Tensor, conv_state: Tensor | None) -> tuple[Tensor, ...]:
        H, K, V = self.num_heads, self.head_dim, self.value_dim
        qkv = self.qkv_proj(x)
        new_state: State = {}
        if self.conv_size is not None:
            qkv, new_state["conv"] = self.conv(qkv, conv_state, reference=self.mode == "reference")
        q, k, v = F.silu(qkv).split([H * K, H * K, H * V], dim=-1)
        q = F.normalize(rearrange(q, "b t (h k) -> b t h k", h=H), dim=-1)
        k = F.normalize(rearrange(k, "b t (h k) -> b t h k", h=H), dim=-1)
        v = rearrange(v, "b t (h v) -> b t h v", h=H)
        p = torch.sigmoid(self.inner_decay)[:, None] * k
        q = q - self.D[:, None] * p  # output correction
        g = -torch.exp(self.A_log) * F.softplus(self.a_proj(x) + self.dt_bias)  # [B, T, H]
        beta = torch.sigmoid(self.b_proj(x))
        return q, k, v, p, beta, g, new_state

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        q, k, v, p, beta, g, new_state = self._inputs(x, None if state is None else state.get("conv"))
        S0 = None if state is None else state["recurrent"]
        if x.shape[1] == 1 and S0 is not None and self.mode != "reference":
            o, S = comba_recurrent(q[:, 0], k[:, 0], v[:, 0], p[:, 0], beta[:, 0], g[:, 0], S0)
            o = o[:, None]
        elif self.mode == "reference":
            o, S = comba_reference(q, k, v, p, beta, g, state=S0)
        elif use_fla("comba", self.backend, x, gated=(q, k, v, beta, g)):
            o, S = comba_fla(q, k, v, p, beta, g, state=S0)
        else:
            o, S = comba_chunk(q, k, v, p, beta, g, state=S0, chunk_size=self.chunk_size)
        new_state["recurrent"] = S
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps) * self.norm_weight
        gate = rearrange(self.g_proj(x), "b t (h v) -> b t h v", h=self.num_heads)
        o = o * torch.sigmoid(gate)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), new_state
