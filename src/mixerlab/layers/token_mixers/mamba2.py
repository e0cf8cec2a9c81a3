"""Mamba-2 token mixer (``mamba2``): the selective SSM in its state-space-duality (SSD) form.

Shapes: ``x: [B, T, D]``; inner width ``E = expand D`` split into ``H = E / P`` heads of ``P``
(``head_dim``) channels: ``[B, T, H, P]``; one group of input/output projections ``B_t, C_t: [B, T, N]``
(``N = state_dim``); per-head step sizes ``dt: [B, T, H]``; state ``{"conv": [B, W-1, E + 2N],
"ssm": [B, H, P, N]}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.backends.fla import ssd_fla, use_fla
from mixerlab.ops.backends.mamba_ssm import check_backend, short_conv_mamba_ssm, ssd_mamba_ssm, use_mamba_ssm
from mixerlab.ops.ssd import ssd_chunk, ssd_recurrent, ssd_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "mamba2",
    paper="Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State "
    "Space Duality",
    arxiv="2405.21060",
    test_kwargs={"dim": 16, "expand": 2, "head_dim": 8, "state_dim": 8, "chunk_size": 8},
    meta={
        "state": "H P N + (W-1)(E + 2N), E = expand D = H P",
        "time": "O(T C E + T E N + T D E) chunked (C = chunk_size)",
        "memory": "O(T C H + T E)",
        "state_kind": "fixed",
    },
)
class Mamba2(TokenMixer):
    """Transformers are SSMs (Mamba-2, state space duality), arXiv:2405.21060.

    ``in_proj`` maps ``x_t`` to ``(z_t, x'_t, B_t, C_t, dt'_t)``; a short causal depthwise conv with
    SiLU runs over ``(x', B, C)``; then per head ``h`` (scalar decay ``A_h = -exp(A_log_h)``)::

        dt_t = softplus(dt'_t + dt_bias)
        h_t  = exp(dt_t A) h_{t-1} + dt_t x'_t B_t^T          (state [P, N] per head)
        y_t  = h_t C_t + D x'_t
        out  = W_out RMSNorm(y_t * SiLU(z_t))                  (gated RMSNorm over E)

    Authors' defaults: ``expand=2``, ``head_dim=64``, ``state_dim=64`` (``d_state=128`` in the
    large models), ``conv_size=4`` (an ``nn.Conv1d`` with its default init), one B/C group, ``A``
    uniform in ``[1, 16]``, ``softplus(dt_bias)`` log-uniform in ``[1e-3, 0.1]``, ``D = 1``, the
    norm applied after the gate. The fast form is
    the SSD chunked algorithm (``ops.ssd.chunk``); ``chunk_size=128`` was measured on a 2-core CPU
    (fwd+bwd, T=1024 and 4096): as fast as 64 at T=1024 and 15-35% faster at 4096; 32 and 256 slower.
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``, ``"mamba_ssm"``): for CUDA inputs the chunk
    mode runs on mamba-ssm's ``mamba_chunk_scan_combined`` (with causal-conv1d's convolution) or on
    fla's ``chunk_simple_gla``; ``"auto"`` takes the first installed (see
    :mod:`mixerlab.ops.backends`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        head_dim: int = 64,
        state_dim: int = 64,
        conv_size: int = 4,
        chunk_size: int = 128,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "mamba2"
        check_backend(name, backend)
        self.backend = backend
        for field, value in (
            ("dim", dim),
            ("expand", expand),
            ("head_dim", head_dim),
            ("state_dim", state_dim),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(name, field, value)
        check(isinstance(conv_size, int) and conv_size >= 2, name, "conv_size", conv_size, "expected >= 2")
        check(norm_eps > 0, name, "norm_eps", norm_eps, "expected > 0")
        inner = expand * dim
        check_divisible(name, "expand * dim", inner, "head_dim", head_dim)
        self.dim, self.inner, self.head_dim, self.state_dim = dim, inner, head_dim, state_dim
        self.num_heads = inner // head_dim
        self.conv_size, self.chunk_size, self.norm_eps = conv_size, chunk_size, norm_eps
        H, N = self.num_heads, state_dim
        self.in_proj = nn.Linear(dim, 2 * inner + 2 * N + H, bias=False)
        self.conv = ShortConv(inner + 2 * N, conv_size, activation="silu", owner=name)
        load_legacy_conv_keys(self, "conv")
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.D = nn.Parameter(torch.empty(H))
        self.norm_weight = nn.Parameter(torch.empty(inner))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(inner, dim, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' init: ``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1] (stored as
        softplus^{-1}), ``D`` and the norm's gain one."""
        init_mamba2_decay_(self.A_log, self.dt_bias)
        nn.init.ones_(self.D)
        nn.init.ones_(self.norm_weight)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        kernels = self.mode != "reference" and use_mamba_ssm(
            "mamba2", self.backend, x, "mamba_chunk_scan_combined"
        )
        conv = short_conv_mamba_ssm if kernels else None
        z, xs, dt, A, B_, C_, conv_state = mamba2_inputs(
            self, x, None if state is None else state["conv"], conv=conv
        )
        h0 = None if state is None else state["ssm"]
        if x.shape[1] == 1 and h0 is not None and self.mode != "reference":
            y, h = ssd_recurrent(xs[:, 0], dt[:, 0], A, B_[:, 0], C_[:, 0], h0)
            y = y[:, None]
        elif self.mode == "reference":
            y, h = ssd_reference(xs, dt, A, B_, C_, state=h0)
        elif kernels:
            y, h = ssd_mamba_ssm(xs, dt, A, B_, C_, state=h0)
        elif use_fla("mamba2", self.backend, xs, gated=(xs, B_, C_, dt)):
            y, h = ssd_fla(xs, dt, A, B_, C_, state=h0)
        else:
            y, h = ssd_chunk(xs, dt, A, B_, C_, state=h0, chunk_size=self.chunk_size)
        return mamba2_readout(self, y, xs, z), {"conv": conv_state, "ssm": h}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        return {
            "conv": self.conv.init_state(batch_size, **f),
            "ssm": torch.zeros(batch_size, self.num_heads, self.head_dim, self.state_dim, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return self.conv.state_size() + self.num_heads * self.head_dim * self.state_dim


# The pieces of a Mamba-2 layer that its variants (log_linear) share: the decay init, the inputs
# of the scan and the read-out around it. ``layer`` has Mamba2's attributes.


@torch.no_grad()
def init_mamba2_decay_(A_log: Tensor, dt_bias: Tensor) -> None:
    """The authors' init: ``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1] (stored as
    softplus^{-1}); drawn in the default dtype, so the weights do not depend on the layer's."""
    H, dev = A_log.numel(), A_log.device
    A_log.copy_(torch.log(torch.empty(H, device=dev).uniform_(1.0, 16.0)))
    dt = torch.exp(torch.empty(H, device=dev).uniform_(math.log(1e-3), math.log(0.1))).clamp(min=1e-4)
    dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)


def mamba2_inputs(
    layer: nn.Module, x: Tensor, conv_state: Tensor | None, *, conv: Callable[..., Any] | None = None
) -> tuple[Tensor, ...]:
    """``z: [B, T, E]``, ``xs: [B, T, H, P]``, ``dt: [B, T, H]``, ``A: [H]``, ``B, C: [B, T, N]`` and
    the conv tail: the input projection, the short convolution and the discretisation step.
    ``conv(layer.conv, xbc, conv_state)``, when given, runs the convolution (a kernel backend)."""
    E, N, H = layer.inner, layer.state_dim, layer.num_heads
    z, xbc, dt = layer.in_proj(x).split([E, E + 2 * N, H], dim=-1)
    if conv is None:
        xbc, conv_state = layer.conv(xbc, conv_state, reference=layer.mode == "reference")
    else:
        xbc, conv_state = conv(layer.conv, xbc, conv_state)
    xs, B_, C_ = xbc.split([E, N, N], dim=-1)
    xs = rearrange(xs, "b t (h p) -> b t h p", h=H)
    dt = F.softplus(dt + layer.dt_bias)
    return z, xs, dt, -torch.exp(layer.A_log), B_, C_, conv_state


def mamba2_readout(layer: nn.Module, y: Tensor, xs: Tensor, z: Tensor) -> Tensor:
    """The skip ``D x``, the SiLU(z) gate, the RMS norm and the output projection: ``[B, T, D]``."""
    y = rearrange(y + layer.D[:, None] * xs, "b t h p -> b t (h p)")
    y = y * F.silu(z)
    y = y * torch.rsqrt(y.square().mean(-1, keepdim=True) + layer.norm_eps) * layer.norm_weight
    return layer.out_proj(y)
