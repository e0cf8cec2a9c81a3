"""Mamba-3 token mixer (``mamba3``): exponential-trapezoidal, rotary (complex) state over Mamba-2's SSD.

Shapes: ``x: [B, T, D]``; inner width ``E = expand D`` split into ``H = E / P`` heads of ``P``
(``head_dim``) channels: ``[B, T, H, P]``; one group of ``B_t, C_t: [B, T, N]`` (``N = state_dim``,
even); per-head ``dt, lam: [B, T, H]``; rotation angles ``theta: [B, T, N/2]``; state
``{"ssm": [B, H, P, N], "prev_x": [B, H, P], "prev_b": [B, N]}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.mamba3 import mamba3_chunk, mamba3_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "mamba3",
    paper="Mamba-3: Improved Sequence Modeling using State Space Principles",
    arxiv="2603.15569",
    test_kwargs={"dim": 16, "expand": 2, "head_dim": 8, "state_dim": 8, "chunk_size": 8},
    meta={
        "state": "H P N + H P + N, E = expand D = H P",
        "time": "O(T C E + T E N + T D E) chunked (C = chunk_size), twice Mamba-2's SSD",
        "memory": "O(T C H + T E + T H N)",
        "state_kind": "fixed",
    },
)
class Mamba3(TokenMixer):
    """Mamba-3 (SISO), "Mamba-3: Improved Sequence Modeling using State Space Principles", arXiv:2603.15569.

    Mamba-2's selective SSM (:class:`~mixerlab.layers.token_mixers.mamba2.Mamba2`) with the two
    SISO changes of the paper, per head ``(A_h = -exp(A_log_h))``::

        dt_t = softplus(dt'_t + dt_bias),  lam_t = sigmoid(lam'_t),  theta_t = W_theta x_t
        h_t = exp(dt_t A) R_t h_{t-1} + (1 - lam_t) dt_t exp(dt_t A) R_t x_{t-1} B_{t-1}^T
              + lam_t dt_t x_t B_t^T                        (exponential-trapezoidal rule)
        y_t = h_t C_t + D x_t,   out = W_out RMSNorm(y * SiLU(z))

    with ``R_t`` the data-dependent rotation of state pairs by ``dt_t theta_t`` (the complex
    state in real form). As in the paper the short convolution is dropped (the trapezoid mixes
    each input with its predecessor). Not included: the MIMO formulation (rank ``> 1`` inputs
    per head) and the B/C norms and biases. Modes: ``"chunk"`` (rotations folded into ``B, C``
    and the trapezoid as two SSD passes, :mod:`mixerlab.ops.mamba3.chunk`) and ``"reference"``
    (the per-step recurrence; also used for one-token decoding). Init as Mamba-2; ``lam``
    starts at ``sigmoid(0) = 1/2``, the classical trapezoid.
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        head_dim: int = 64,
        state_dim: int = 64,
        chunk_size: int = 128,
        norm_eps: float = 1e-5,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        name = "mamba3"
        for field, value in (
            ("dim", dim),
            ("expand", expand),
            ("head_dim", head_dim),
            ("state_dim", state_dim),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(name, field, value)
        check(state_dim % 2 == 0, name, "state_dim", state_dim, "expected an even number (rotated pairs)")
        check(norm_eps > 0, name, "norm_eps", norm_eps, "expected > 0")
        inner = expand * dim
        check_divisible(name, "expand * dim", inner, "head_dim", head_dim)
        self.dim, self.inner, self.head_dim, self.state_dim = dim, inner, head_dim, state_dim
        self.num_heads = inner // head_dim
        self.chunk_size, self.norm_eps = chunk_size, norm_eps
        H, N = self.num_heads, state_dim
        f = {"device": device, "dtype": dtype}
        self.in_proj = nn.Linear(dim, 2 * inner + 2 * N + 2 * H + N // 2, bias=False, **f)
        self.out_proj = nn.Linear(inner, dim, bias=False, **f)
        self.A_log = nn.Parameter(torch.empty(H, **f))
        self.dt_bias = nn.Parameter(torch.empty(H, **f))
        self.D = nn.Parameter(torch.empty(H, **f))
        self.norm_weight = nn.Parameter(torch.empty(inner, **f))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2's init: ``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1] (stored as
        softplus^{-1}), ``D`` and the norm's gain one."""
        self.A_log.copy_(torch.log(torch.empty_like(self.A_log).uniform_(1.0, 16.0)))
        dt = torch.exp(torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(0.1))).clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
        nn.init.ones_(self.D)
        nn.init.ones_(self.norm_weight)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        E, N, H = self.inner, self.state_dim, self.num_heads
        z, xs, B_, C_, dt, lam, theta = self.in_proj(x).split([E, E, N, N, H, H, N // 2], dim=-1)
        xs = rearrange(xs, "b t (h p) -> b t h p", h=H)
        dt = F.softplus(dt + self.dt_bias)
        lam = torch.sigmoid(lam)
        A = -torch.exp(self.A_log)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        ssm = (state["ssm"], state["prev_x"], state["prev_b"])
        if self.mode == "reference" or x.shape[1] == 1:
            y, (h, prev_x, prev_b) = mamba3_reference(xs, dt, A, lam, theta, B_, C_, state=ssm)
        else:
            y, (h, prev_x, prev_b) = mamba3_chunk(
                xs, dt, A, lam, theta, B_, C_, state=ssm, chunk_size=self.chunk_size
            )
        y = rearrange(y + self.D[:, None] * xs, "b t h p -> b t (h p)")
        y = y * F.silu(z)
        y = y * torch.rsqrt(y.square().mean(-1, keepdim=True) + self.norm_eps) * self.norm_weight
        return self.out_proj(y), {"ssm": h, "prev_x": prev_x, "prev_b": prev_b}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, P, N = self.num_heads, self.head_dim, self.state_dim
        return {
            "ssm": torch.zeros(batch_size, H, P, N, **f),
            "prev_x": torch.zeros(batch_size, H, P, **f),
            "prev_b": torch.zeros(batch_size, N, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * self.head_dim * (self.state_dim + 1) + self.state_dim
