"""Gated DeltaProduct (``gated_deltaproduct``): ``n_h`` delta-rule steps per token (arXiv:2502.10297).

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K]``; per-step keys ``[B, T, n_h, H, K]`` and values
``[B, T, n_h, H, V]``; ``beta: [B, T, n_h, H]``; gate ``g: [B, T, H]``; recurrent state
``[B, H, K, V]``; short-conv tail ``[B, W-1, C]`` over the concatenated channels
``C = H (K + n_h (K + V))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.short_conv import ShortConv
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.layers.token_mixers.delta import DeltaState, check_bool, check_delta_options
from mixerlab.ops.backends.fla import (
    FLA_HALF_DTYPES,
    check_backend,
    deltaproduct_fla,
    use_fla,
)
from mixerlab.ops.deltaproduct import deltaproduct_chunk, deltaproduct_recurrent, deltaproduct_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "gated_deltaproduct",
    paper="DeltaProduct: Improving State-Tracking in Linear RNNs via Householder Products",
    arxiv="2502.10297",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 7, "num_householder": 2},
    meta={
        "state": "H K V + (W-1) H (K + n_h (K + V)) (conv tail), V = expand K",
        "time": "O(n_h T C D + n_h T D^2 / H) chunked (C = chunk_size)",
        "memory": "O(n_h T C H + n_h T D)",
        "state_kind": "fixed",
    },
)
class GatedDeltaProduct(DeltaState, TokenMixer):
    """Gated DeltaProduct, "DeltaProduct: Improving State-Tracking in Linear RNNs via ..." (arXiv:2502.10297).

    Gated DeltaNet with ``n_h = num_householder`` delta-rule steps per token, each with its own
    key, value and learning rate, and the gate applied once per token::

        q_t, k_{t,j} = L2norm(SiLU(conv(W x)_t)),  v_{t,j} = SiLU(conv(W x)_t),  beta_{t,j} = sigmoid(.)
        S_t = alpha_t S_{t-1} prod_{j=1..n_h} (I - beta_{t,j} k_{t,j} k_{t,j}^T) + (the n_h writes)
        o_t = RMSNorm(S_t q_t / sqrt(K)) * SiLU(W_g x_t)

    (the exact order of the steps is in ``ops.deltaproduct.reference``). The transition is a
    product of ``n_h`` generalised Householder matrices, so its rank grows with ``n_h``; with
    ``allow_negative_eigenvalues=True`` (``beta in [0, 2]``, the paper's default for state
    tracking) each factor can be a reflection. ``num_householder=1`` is ``gated_deltanet``, with
    the same parameter names and shapes. The fast form is the chunked gated delta rule
    (``ops.delta_rule``) over the interleaved sequence of length ``n_h T``; ``chunk_size`` counts
    its steps. ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): the chunk mode runs on fla's
    ``chunk_gated_delta_product`` for CUDA inputs in 16 bits (the kernel refuses float32) when
    installed (see :mod:`mixerlab.ops.backends.fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        expand: int = 2,
        num_householder: int = 2,
        conv_size: int | None = 4,
        chunk_size: int = 64,
        allow_negative_eigenvalues: bool = True,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "gated_deltaproduct"
        check_backend(name, backend)
        self.backend = backend
        self.head_dim = check_delta_options(
            name, dim, num_heads, head_dim, expand, conv_size, chunk_size, norm_eps
        )
        check_positive_int(name, "num_householder", num_householder)
        check_bool(name, "allow_negative_eigenvalues", allow_negative_eigenvalues)
        self.dim, self.num_heads, self.value_dim = dim, num_heads, expand * self.head_dim
        self.num_householder, self.conv_size, self.chunk_size = num_householder, conv_size, chunk_size
        self.allow_negative_eigenvalues, self.norm_eps = allow_negative_eigenvalues, norm_eps
        H, K, V, n = num_heads, self.head_dim, self.value_dim, num_householder
        channels = H * (K + n * (K + V))  # [q | k_1..k_n | v_1..v_n]: gated_deltanet's layout at n = 1
        self.qkv_proj = nn.Linear(dim, channels, bias=False)
        self.b_proj = nn.Linear(dim, n * H, bias=False)
        if conv_size is not None:
            self.conv = ShortConv(channels, conv_size, bias=False, owner=name)
        self.norm_weight = nn.Parameter(torch.empty(V))
        self.o_proj = nn.Linear(H * V, dim, bias=False)
        self.a_proj = nn.Linear(dim, H, bias=False)
        self.g_proj = nn.Linear(dim, H * V, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2's decay init: ``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1]; norm gain 1."""
        nn.init.ones_(self.norm_weight)
        self.A_log.copy_(torch.log(torch.empty_like(self.A_log).uniform_(1.0, 16.0)))
        dt = torch.exp(torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(0.1))).clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)

    def _inputs(self, x: Tensor, conv_state: Tensor | None) -> tuple[Tensor, ...]:
        H, K, V, n = self.num_heads, self.head_dim, self.value_dim, self.num_householder
        qkv = self.qkv_proj(x)
        new_state: State = {}
        if self.conv_size is not None:
            qkv, new_state["conv"] = self.conv(qkv, conv_state, reference=self.mode == "reference")
        q, k, v = F.silu(qkv).split([H * K, n * H * K, n * H * V], dim=-1)
        q = F.normalize(rearrange(q, "b t (h k) -> b t h k", h=H), dim=-1)
        k = F.normalize(rearrange(k, "b t (n h k) -> b t n h k", n=n, h=H), dim=-1)
        v = rearrange(v, "b t (n h v) -> b t n h v", n=n, h=H)
        beta = rearrange(torch.sigmoid(self.b_proj(x)), "b t (n h) -> b t n h", n=n)
        if self.allow_negative_eigenvalues:
            beta = 2.0 * beta  # each factor's eigenvalue 1 - beta spans [-1, 1]
        g = -torch.exp(self.A_log) * F.softplus(self.a_proj(x) + self.dt_bias)  # [B, T, H]
        return q, k, v, beta, g, new_state

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        q, k, v, beta, g, new_state = self._inputs(x, None if state is None else state.get("conv"))
        S0 = None if state is None else state["recurrent"]
        if x.shape[1] == 1 and S0 is not None and self.mode != "reference":
            o, S = deltaproduct_recurrent(q[:, 0], k[:, 0], v[:, 0], beta[:, 0], g[:, 0], S0)
            o = o[:, None]
        elif self.mode == "reference":
            o, S = deltaproduct_reference(q, k, v, beta, g, state=S0)
        elif use_fla("gated_deltaproduct", self.backend, x, dtypes=FLA_HALF_DTYPES, gated=(q, k, v, beta, g)):
            o, S = deltaproduct_fla(q, k, v, beta, g, state=S0)
        else:
            o, S = deltaproduct_chunk(q, k, v, beta, g, state=S0, chunk_size=self.chunk_size)
        new_state["recurrent"] = S
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps) * self.norm_weight
        o = o * F.silu(rearrange(self.g_proj(x), "b t (h v) -> b t h v", h=self.num_heads))
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), new_state
