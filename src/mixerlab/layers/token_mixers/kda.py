"""Kimi Delta Attention (``kda``): the gated delta rule with a per-channel decay (arXiv:2510.26692).

Shapes: ``x: [B, T, D]``; queries/keys and the decay ``[B, T, H, K]``; values ``[B, T, H, V]``;
``beta: [B, T, H]``; recurrent state ``[B, H, K, V]``; short-conv tail ``[B, W-1, C]`` over the
concatenated ``q, k, v`` channels ``C = H (2K + V)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.layers.short_conv import ShortConv
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.layers.token_mixers.delta import DeltaState, check_bool, check_delta_options
from mixerlab.ops.backends.fla import check_backend, delta_rule_fla, use_fla
from mixerlab.ops.kda import kda_chunk, kda_recurrent, kda_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "kda",
    paper="Kimi Linear: An Expressive, Efficient Attention Architecture",
    arxiv="2510.26692",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V + (W-1) H (2K + V) (conv tail)",
        "time": "O(T C D K / H + T D^2 / H) chunked (C = chunk_size)",
        "memory": "O(T C D)",
        "state_kind": "fixed",
    },
)
class KimiDeltaAttention(DeltaState, TokenMixer):
    """Kimi Delta Attention, "Kimi Linear: An Expressive, Efficient Attention ..." (arXiv:2510.26692).

    Gated DeltaNet's update with a fine-grained (per key channel) decay instead of a scalar one::

        q_t, k_t = L2norm(SiLU(conv(W_q x)_t)), L2norm(SiLU(conv(W_k x)_t)),  v_t = SiLU(conv(W_v x)_t)
        g_t      = -exp(A_log) * softplus(W_f2 W_f1 x_t + dt_bias)  in R^K,  alpha_t = exp(g_t)
        beta_t   = sigmoid(w_beta . x_t)
        S_t      = (I - beta_t k_t k_t^T) diag(alpha_t) S_{t-1} + beta_t k_t v_t^T
        o_t      = RMSNorm(S_t^T q_t / sqrt(K)) * sigmoid(W_g2 W_g1 x_t),  y_t = W_o [o_t^1; ...; o_t^H]

    The decay and the output gate are low-rank projections of rank ``head_dim`` (the paper's).
    ``allow_negative_eigenvalues=True`` uses ``beta = 2 sigmoid(.)`` (arXiv:2411.12537). The fast
    form is the chunked diagonal-plus-rank-one UT transform shared with ``rwkv7``
    (``ops.rwkv7.chunk``); its pairwise per-channel decay factors cost ``chunk_size`` times the
    input memory, hence the small default chunk. ``backend`` (``"auto"``, ``"torch"``, ``"fla"``):
    the chunk mode runs on fla's ``chunk_kda`` for CUDA inputs when installed (see
    :mod:`mixerlab.ops.backends.fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        expand: int = 1,
        conv_size: int | None = 4,
        chunk_size: int = 16,
        allow_negative_eigenvalues: bool = False,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "kda"
        check_backend(name, backend)
        self.backend = backend
        self.head_dim = check_delta_options(
            name, dim, num_heads, head_dim, expand, conv_size, chunk_size, norm_eps
        )
        check_bool(name, "allow_negative_eigenvalues", allow_negative_eigenvalues)
        self.dim, self.num_heads, self.value_dim = dim, num_heads, expand * self.head_dim
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.allow_negative_eigenvalues, self.norm_eps = allow_negative_eigenvalues, norm_eps
        H, K, V = num_heads, self.head_dim, self.value_dim
        self.qkv_proj = nn.Linear(dim, H * (2 * K + V), bias=False)
        if conv_size is not None:
            self.conv = ShortConv(H * (2 * K + V), conv_size, bias=False, owner=name)
        self.b_proj = nn.Linear(dim, H, bias=False)
        self.f_down = nn.Linear(dim, K, bias=False)
        self.f_up = nn.Linear(K, H * K, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H * K))
        self.g_down = nn.Linear(dim, V, bias=False)
        self.g_up = nn.Linear(V, H * V, bias=False)
        self.norm_weight = nn.Parameter(torch.empty(V))
        self.o_proj = nn.Linear(H * V, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2's decay init (``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1]); norm gain 1."""
        nn.init.ones_(self.norm_weight)
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
        decay = F.softplus(self.f_up(self.f_down(x)) + self.dt_bias)
        g = -rearrange(decay, "b t (h k) -> b t h k", h=H) * torch.exp(self.A_log)[:, None]
        beta = torch.sigmoid(self.b_proj(x))  # [B, T, H]
        if self.allow_negative_eigenvalues:
            beta = 2.0 * beta
        return q, k, v, g, beta, new_state

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        q, k, v, g, beta, new_state = self._inputs(x, None if state is None else state.get("conv"))
        S0 = None if state is None else state["recurrent"]
        if x.shape[1] == 1 and S0 is not None and self.mode != "reference":
            o, S = kda_recurrent(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], S0)
            o = o[:, None]
        elif self.mode == "reference":
            o, S = kda_reference(q, k, v, g, beta, state=S0)
        elif use_fla("kda", self.backend, x):
            o, S = delta_rule_fla(q, k, v, beta, g, state=S0)
        else:
            o, S = kda_chunk(q, k, v, g, beta, state=S0, chunk_size=self.chunk_size)
        new_state["recurrent"] = S
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps) * self.norm_weight
        gate = rearrange(self.g_up(self.g_down(x)), "b t (h v) -> b t h v", h=self.num_heads)
        o = o * torch.sigmoid(gate)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), new_state
