"""Diagonal state-space layer: ``s4d``, one layer seen as a convolution and as a recurrence.

Shapes: ``x: [B, T, H]`` (``H = dim`` channels, each its own single-input single-output SSM);
complex modes ``[H, M]`` with ``M = state_dim / 2`` (the other half are their complex conjugates);
kernel ``[H, T]``; state ``{"h": [B, H, M, 2]}`` (real and imaginary parts).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.diag_ssm import diag_ssm_conv, diag_ssm_kernel
from mixerlab.ops.linear_scan import linear_scan_chunk, linear_scan_recurrent, linear_scan_reference
from mixerlab.ops.precision import widen
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "s4d",
    paper="On the Parameterization and Initialization of Diagonal State Space Models",
    arxiv="2206.11893",
    test_kwargs={"dim": 16, "state_dim": 8, "chunk_size": 8},
    meta={
        "state": "H N (N/2 complex modes per channel as real/imaginary pairs)",
        "time": "O(T H N + T log T H) (conv), O(T H N) (recurrent)",
        "memory": "O(T H N)",
        "state_kind": "fixed",
    },
)
class S4D(TokenMixer):
    """On the Parameterization and Initialization of Diagonal State Space Models (arXiv:2206.11893).

    Per channel ``h`` a continuous diagonal SSM ``x' = A x + B u``, ``y = C x`` (the linear
    state-space layer of arXiv:2110.13985) with complex diagonal ``A_n = -exp(log_A_real_n) +
    i A_imag_n``, S4D-Lin initialisation ``A_n = -1/2 + i pi n``, ``B_n = 1`` (learnable; the
    authors' minimal code folds it into ``C``), ``C_n`` complex normal, and a learnable step
    ``dt = exp(log_dt)`` initialised log-uniform in ``[dt_min, dt_max] = [0.001, 0.1]`` (the
    authors' defaults). Zero-order hold:

        A_bar = exp(dt A),   B_bar = (exp(dt A) - 1) / A * B
        h_t = A_bar h_{t-1} + B_bar u_t,   y_t = 2 Re(sum_n C_n h_{t,n}) + D u_t

    (``state_dim = N`` counts the modes of the real system: ``N/2`` are kept, their conjugates
    give the factor 2). The same map is the causal convolution ``y = K * u + D u`` with kernel
    ``K_l = 2 Re(sum_n C_n B_bar_n A_bar_n^l)`` built by a Vandermonde product and applied by FFT.
    With an incoming state ``h_{-1}`` the convolution view adds ``2 Re(C A_bar^(t+1) h_{-1})`` and
    returns ``h_{T-1} = A_bar^T h_{-1} + sum_s A_bar^(T-1-s) B_bar u_s``, so split calls match one
    call. Output, position-wise: ``out = W_out GELU(y) + b``.

    Modes: ``"conv"`` (FFT convolution, ``O(H N T)`` for the Vandermonde kernel plus
    ``O(H T log T)``; the training form, :func:`~mixerlab.ops.diag_ssm.diag_ssm_conv`),
    ``"recurrent"`` (the recurrence by the chunked scan, ``chunk_size`` steps per chunk; it
    materialises every state ``[B, T, H, N/2]`` complex, so it is the decoding and cross-check
    form, not a training one) and ``"reference"`` (per-step loop).
    Decoding steps (``T == 1`` with a state) take one recurrent step in every mode.
    """

    modes = ("conv", "recurrent", "reference")

    def __init__(
        self,
        dim: int,
        state_dim: int = 64,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        name = "s4d"
        check_positive_int(name, "dim", dim)
        check_positive_int(name, "state_dim", state_dim)
        check(state_dim % 2 == 0, name, "state_dim", state_dim, "expected an even number (conjugate pairs)")
        check_positive_int(name, "chunk_size", chunk_size)
        check(dt_min > 0, name, "dt_min", dt_min, "expected > 0")
        check(dt_min <= dt_max, name, "dt_max", dt_max, f"expected >= dt_min={dt_min}")
        self.dim, self.state_dim, self.chunk_size = dim, state_dim, chunk_size
        H, M = dim, state_dim // 2
        self.dt_min, self.dt_max = dt_min, dt_max
        self.log_dt = nn.Parameter(torch.empty(H))
        self.log_A_real = nn.Parameter(torch.empty(H, M))
        self.A_imag = nn.Parameter(torch.empty(H, M))
        self.B_re = nn.Parameter(torch.empty(H, M))
        self.B_im = nn.Parameter(torch.empty(H, M))
        self.C_re = nn.Parameter(torch.empty(H, M))
        self.C_im = nn.Parameter(torch.empty(H, M))
        self.D = nn.Parameter(torch.empty(H))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(dim, dim)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """S4D-Lin: ``dt`` log-uniform in ``[dt_min, dt_max]``, ``A = -1/2 + i pi n``, ``B = 1``,
        ``C`` complex normal of unit variance, ``D`` N(0, 1)."""
        (H, M), dev = self.A_imag.shape, self.A_imag.device
        log_min, log_max = math.log(self.dt_min), math.log(self.dt_max)
        self.log_dt.copy_(torch.rand(H, device=dev) * (log_max - log_min) + log_min)
        nn.init.constant_(self.log_A_real, math.log(0.5))
        self.A_imag.copy_(math.pi * torch.arange(M, dtype=torch.float32, device=dev).expand(H, M))
        nn.init.ones_(self.B_re)
        nn.init.zeros_(self.B_im)
        self.C_re.copy_(torch.randn(H, M, device=dev) * math.sqrt(0.5))
        self.C_im.copy_(torch.randn(H, M, device=dev) * math.sqrt(0.5))
        self.D.copy_(torch.randn(H, device=dev))

    def _discretize(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``dt A``, ``A_bar``, ``B_bar``, ``C``: all ``[H, M]`` complex."""
        log_A_real, A_imag, log_dt, B_re, B_im, C_re, C_im = widen(
            self.log_A_real, self.A_imag, self.log_dt, self.B_re, self.B_im, self.C_re, self.C_im
        )
        A = torch.complex(-torch.exp(log_A_real), A_imag)
        dtA = torch.exp(log_dt)[:, None] * A
        A_bar = torch.exp(dtA)
        B_bar = (A_bar - 1) / A * torch.complex(B_re, B_im)
        return dtA, A_bar, B_bar, torch.complex(C_re, C_im)

    def kernel(self, length: int) -> Tensor:
        """The convolution kernel ``K: [H, length]``, ``K_l = 2 Re(sum_n C_n B_bar_n A_bar_n^l)``."""
        dtA, _, B_bar, C = self._discretize()
        return rearrange(diag_ssm_kernel(dtA, B_bar, C, length), "l h -> h l")

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        # the SSM runs in float32 at least: complex numbers and the FFT need it (ops/precision.py)
        (u,) = widen(x)
        h0 = None if state is None else torch.view_as_complex(state["h"].to(u.dtype).contiguous())
        dtA, A_bar, B_bar, C = self._discretize()
        if self.mode == "conv" and not (x.shape[1] == 1 and h0 is not None):
            # one input channel per SSM (E = 1); D is added below, in the layer's dtype
            y, last = diag_ssm_conv(u[..., None], dtA, B_bar, C, None, None if h0 is None else h0[:, :, None])
            y, last = y[..., 0], last[:, :, 0]
        else:
            b = B_bar * u[..., None]  # [B, T, H, M]
            if self.mode == "reference":
                h, last = linear_scan_reference(A_bar, b, h0)
            elif x.shape[1] == 1 and h0 is not None:
                last = linear_scan_recurrent(A_bar, b[:, 0], h0)
                h = last[:, None]
            else:
                h, last = linear_scan_chunk(A_bar, b, h0, chunk_size=self.chunk_size)
            y = 2 * torch.einsum("hm,bthm->bth", C, h).real
        y = y.to(x.dtype) + self.D * x
        # the state stays in the scan's dtype (float32 for half layers): it is carried indefinitely
        return self.out_proj(nn.functional.gelu(y)), {"h": torch.view_as_real(last)}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {
            "h": torch.zeros(batch_size, self.dim, self.state_dim // 2, 2, **self._factory(device, dtype))
        }

    def state_size(self, seq_len: int) -> int:
        return self.dim * self.state_dim
