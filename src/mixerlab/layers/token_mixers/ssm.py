"""Selective state-space token mixers: ``mamba`` (Mamba's S6 block).

Shapes: ``x: [B, T, D]``; inner channels ``[B, T, E]`` with ``E = expand * D``; SSM state
``[B, E, N]`` with ``N = state_dim``; short-conv tail ``[B, W-1, E]`` with ``W = conv_size``;
input-dependent ``B_t, C_t: [B, T, N]`` and step sizes ``dt: [B, T, E]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.backends.fla import selective_scan_fla, use_fla
from mixerlab.ops.backends.mamba_ssm import (
    MAX_STATE_DIM,
    check_backend,
    selective_scan_mamba_ssm,
    short_conv_mamba_ssm,
    use_mamba_ssm,
)
from mixerlab.ops.selective_scan import (
    selective_scan_chunk,
    selective_scan_parallel,
    selective_scan_recurrent,
    selective_scan_reference,
)
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "mamba",
    paper="Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
    arxiv="2312.00752",
    test_kwargs={"dim": 16, "expand": 2, "state_dim": 4, "conv_size": 4, "chunk_size": 8},
    meta={
        "state": "E N + E (W-1)   (E = expand D, N = state_dim, W = conv_size)",
        "time": "O(T E N + T D E)",
        "memory": "O(T E + chunk E N) (chunks recomputed in backward)",
        "state_kind": "fixed",
    },
)
class Mamba(TokenMixer):
    """Mamba selective SSM block, "Mamba: Linear-Time Sequence Modeling..." (arXiv:2312.00752).

    ``x, z = in_proj(u)`` (each ``E = expand * dim`` wide); ``x = silu(conv(x))`` with a causal
    depthwise conv of ``conv_size`` taps; ``(dt_low, B, C) = x_proj(x)``;
    ``dt = softplus(dt_proj(dt_low))``; ``A = -exp(A_log)``; then per channel ``e`` and state
    ``n``::

        h_t = exp(dt_t A) * h_{t-1} + dt_t B_t x_t        (simplified ZOH of the authors' code)
        y_t = C_t . h_t + D x_t
        out = out_proj(y * silu(z))

    Defaults are the authors': ``expand=2``, ``state_dim=16``, ``dt_rank=ceil(dim/16)``,
    ``conv_size=4``, S4D-real ``A_log = log(1..N)``, ``D = 1``, ``dt`` initialised log-uniform in
    [1e-3, 1e-1] through the ``dt_proj`` bias, biases only on the conv and ``dt_proj``.

    ``allow_negative_eigenvalues`` maps the transition ``a = exp(dt A)`` to ``2 a - 1`` in (-1, 1)
    as done for Mamba in "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues"
    (arXiv:2411.12537), which lets one layer track parity.

    Modes: ``"scan"`` (blocked two-level scan over chunks of ``chunk_size`` tokens, each chunk
    recomputed in the backward pass (a hand-written one when every ``dt A`` is above the floor)
    to keep memory linear in T with a small constant; default
    64: 1.15-1.17x the throughput of 256 at D=256, L=4096 on a 2-core CPU in two interleaved
    sweeps (``benchmarks/chunk_sizes.py``), and smaller chunks hold less memory; see
    :mod:`mixerlab.ops.selective_scan.scan`), ``"parallel"`` (no loop over time: blocked levels and
    a log-depth top, so the number of dispatched operators hardly grows with T, which is what a
    GPU needs; memory ``O(T E N)``, ``chunk_size`` unused; see
    :mod:`mixerlab.ops.selective_scan.parallel`) and ``"reference"`` (per-token loop). ``"scan"``
    stays the default because it is the faster one on a CPU, where its chunks stay in cache
    (``benchmarks/mamba_chunk.py``); on a GPU choose ``"parallel"``. A one-token
    call takes the recurrent step. State: ``{"conv": [B, W-1, E], "ssm": [B, E, N]}``.
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``, ``"mamba_ssm"``): for CUDA inputs both fast modes
    run on mamba-ssm's ``selective_scan_fn`` (with causal-conv1d's convolution) for calls without
    a state, or as gated linear attention on fla's ``chunk_gla`` (one head per channel); ``"auto"``
    takes the first installed; neither has negative eigenvalues (see :mod:`mixerlab.ops.backends`).
    """

    modes = ("scan", "parallel", "reference")

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        state_dim: int = 16,
        dt_rank: int | None = None,
        conv_size: int = 4,
        chunk_size: int = 64,
        allow_negative_eigenvalues: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "mamba"
        check_backend(name, backend)
        self.backend = backend
        for field, value in (
            ("dim", dim),
            ("expand", expand),
            ("state_dim", state_dim),
            ("conv_size", conv_size),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(name, field, value)
        dt_rank = math.ceil(dim / 16) if dt_rank is None else dt_rank
        check_positive_int(name, "dt_rank", dt_rank)
        check(0 < dt_min <= dt_max, name, "dt_min", dt_min, f"expected 0 < dt_min <= dt_max={dt_max}")
        check(
            isinstance(allow_negative_eigenvalues, bool),
            name,
            "allow_negative_eigenvalues",
            allow_negative_eigenvalues,
            "expected a bool",
        )
        check(
            not (backend in ("fla", "mamba_ssm") and allow_negative_eigenvalues),
            name,
            "backend",
            backend,
            f"{backend}'s kernels have no negative eigenvalues (2 exp(dt A) - 1); use 'auto' or 'torch'",
        )
        check(
            not (backend == "mamba_ssm" and state_dim > MAX_STATE_DIM),
            name,
            "backend",
            backend,
            f"mamba-ssm's selective_scan_fn takes state_dim <= {MAX_STATE_DIM} (got {state_dim})",
        )
        E, N = expand * dim, state_dim
        self.dim, self.inner_dim, self.state_dim, self.dt_rank = dim, E, N, dt_rank
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.allow_negative_eigenvalues = allow_negative_eigenvalues

        self.in_proj = nn.Linear(dim, 2 * E, bias=bias)
        self.conv = ShortConv(E, conv_size, activation="silu", owner=name)
        load_legacy_conv_keys(self, "conv")
        self.x_proj = nn.Linear(E, dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(dt_rank, E, bias=True)
        self.A_log = nn.Parameter(torch.empty(E, N))
        self.D = nn.Parameter(torch.empty(E))
        self.out_proj = nn.Linear(E, dim, bias=bias)
        self.dt_min, self.dt_max = dt_min, dt_max
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, floor: float = 1e-4) -> None:
        """S4D-real ``A_log = log(1..N)``, ``D = 1``, and the authors' step-size init through
        ``dt_proj``: weight uniform in ``+-dt_rank^-1/2``, bias ``softplus^{-1}(dt)`` with ``dt``
        log-uniform in ``[dt_min, dt_max]`` (floored at ``floor``)."""
        E, N, dev = self.inner_dim, self.state_dim, self.A_log.device
        dt_min, dt_max = self.dt_min, self.dt_max
        self.A_log.copy_(torch.log(torch.arange(1, N + 1, dtype=torch.float32, device=dev)).repeat(E, 1))
        nn.init.ones_(self.D)
        std = self.dt_rank**-0.5
        self.dt_proj.weight.uniform_(-std, std)
        u = torch.rand(E, device=dev)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp_min(floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        reference = self.mode == "reference"
        step = not reference and x.shape[1] == 1
        kernels = not reference and not self.allow_negative_eigenvalues and self.state_dim <= MAX_STATE_DIM
        kernels = kernels and use_mamba_ssm("mamba", self.backend, x)
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, T, E] each
        conv_state = None if state is None else state["conv"]
        if kernels:
            xs, conv_state = short_conv_mamba_ssm(self.conv, xs, conv_state)
        else:
            xs, conv_state = self.conv(xs, conv_state, reference=reference)
        dt_low, B, C = self.x_proj(xs).split([self.dt_rank, self.state_dim, self.state_dim], dim=-1)
        dt = F.softplus(self.dt_proj(dt_low))  # [B, T, E]
        A = -torch.exp(self.A_log)  # [E, N]
        kwargs = {
            "state": None if state is None else state["ssm"],
            "negative_eigenvalues": self.allow_negative_eigenvalues,
        }
        if reference:
            y, ssm_state = selective_scan_reference(xs, dt, A, B, C, **kwargs)
        elif kernels and not step and state is None:  # the kernel has no initial state
            # D x and the SiLU(z) gate run fused in the kernel
            y, ssm_state = selective_scan_mamba_ssm(xs, dt, A, B, C, D=self.D, z=z)
            return self.out_proj(y), {"conv": conv_state, "ssm": ssm_state}
        elif not step and not self.allow_negative_eigenvalues and use_fla("mamba", self.backend, xs):
            y, ssm_state = selective_scan_fla(xs, dt, A, B, C, state=kwargs["state"])
        elif step:
            y, ssm_state = selective_scan_recurrent(xs, dt, A, B, C, **kwargs)
        elif self.mode == "parallel":
            y, ssm_state = selective_scan_parallel(xs, dt, A, B, C, **kwargs)
        else:
            y, ssm_state = selective_scan_chunk(xs, dt, A, B, C, chunk_size=self.chunk_size, **kwargs)
        y = (y + self.D * xs) * F.silu(z)
        return self.out_proj(y), {"conv": conv_state, "ssm": ssm_state}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        return {
            "conv": self.conv.init_state(batch_size, **f),
            "ssm": torch.zeros(batch_size, self.inner_dim, self.state_dim, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return self.inner_dim * (self.conv_size - 1 + self.state_dim)
