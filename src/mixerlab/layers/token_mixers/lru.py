"""Linear Recurrent Unit: ``lru``, a complex diagonal linear recurrence.

Shapes: ``x: [B, T, D]``; complex state ``[B, N]`` (``N = state_dim``), carried in the returned
state as real and imaginary parts ``{"h": [B, N, 2]}`` so that ``state_size`` counts real scalars.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.linear_scan import (
    linear_scan_chunk,
    linear_scan_packed,
    linear_scan_recurrent,
    linear_scan_reference,
)
from mixerlab.ops.precision import wide_dtype, widen
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "lru",
    paper="Resurrecting Recurrent Neural Networks for Long Sequences",
    arxiv="2303.06349",
    test_kwargs={"dim": 16, "state_dim": 12, "chunk_size": 8},
    meta={
        "state": "2 N (complex diagonal state as real/imaginary pairs)",
        "time": "O(T D N)",
        "memory": "O(T N)",
        "state_kind": "fixed",
    },
)
class LinearRecurrentUnit(TokenMixer):
    """Resurrecting Recurrent Neural Networks for Long Sequences (arXiv:2303.06349): the LRU.

    ``x_t = Lambda * x_{t-1} + gamma * (B u_t)`` and ``y_t = Re(C x_t) + D * u_t`` with a complex
    diagonal ``Lambda = exp(-exp(nu_log) + i exp(theta_log))`` (stable for any parameter value),
    complex ``B: [N, D]``, ``C: [D, N]``, real ``D: [D]``, and the normalisation
    ``gamma = exp(gamma_log)`` initialised to ``sqrt(1 - |Lambda|^2)`` so that white-noise inputs
    keep unit state variance. Ring initialisation: ``|Lambda|`` uniform on the ring
    ``[r_min, r_max]`` (uniform in area) and phase uniform in ``[0, max_phase]``; the defaults
    ``r_min=0, r_max=1, max_phase=2 pi`` are those of the paper's reference code (its long-range
    tasks use ``r_min=0.9, r_max=0.999`` and a smaller ``max_phase``). ``B`` entries are complex
    normal with variance ``1/D``, ``C`` with variance ``1/N`` (the paper's Glorot-style choice).

    ``state_dim`` defaults to ``dim``. Modes: ``"scan"`` (chunked doubling scan,
    ``chunk_size`` steps per chunk) and ``"reference"`` (per-step loop).
    """

    modes = ("scan", "reference")
    packed = "native"

    def __init__(
        self,
        dim: int,
        state_dim: int | None = None,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        name = "lru"
        check_positive_int(name, "dim", dim)
        state_dim = dim if state_dim is None else state_dim
        check_positive_int(name, "state_dim", state_dim)
        check_positive_int(name, "chunk_size", chunk_size)
        check(0.0 <= r_min < 1.0, name, "r_min", r_min, "expected 0 <= r_min < 1")
        check(r_min < r_max <= 1.0, name, "r_max", r_max, f"expected r_min={r_min} < r_max <= 1")
        check(max_phase > 0, name, "max_phase", max_phase, "expected > 0")
        self.dim, self.state_dim, self.chunk_size = dim, state_dim, chunk_size
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        N = state_dim
        self.nu_log = nn.Parameter(torch.empty(N))
        self.theta_log = nn.Parameter(torch.empty(N))
        self.gamma_log = nn.Parameter(torch.empty(N))
        self.B_re = nn.Parameter(torch.empty(N, dim))
        self.B_im = nn.Parameter(torch.empty(N, dim))
        self.C_re = nn.Parameter(torch.empty(dim, N))
        self.C_im = nn.Parameter(torch.empty(dim, N))
        self.D = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Ring initialisation of ``Lambda``, ``gamma = sqrt(1 - |Lambda|^2)``, Glorot-style ``B``,
        ``C`` and ``D`` ~ N(0, 1) (see the class docstring)."""
        N, dim, dev = self.state_dim, self.dim, self.D.device
        r_min, r_max = self.r_min, self.r_max
        # Ring initialisation: uniform in area between radii r_min and r_max.
        u1 = torch.rand(N, device=dev).clamp_min(1e-6)
        u2 = torch.rand(N, device=dev).clamp_min(1e-6)
        modulus_sq = u1 * (r_max**2 - r_min**2) + r_min**2
        nu = -0.5 * torch.log(modulus_sq.clamp(max=1 - 1e-6))
        self.nu_log.copy_(torch.log(nu))
        self.theta_log.copy_(torch.log(self.max_phase * u2))
        self.gamma_log.copy_(0.5 * torch.log(1 - torch.exp(-2 * nu)))
        self.B_re.copy_(torch.randn(N, dim, device=dev) / math.sqrt(2 * dim))
        self.B_im.copy_(torch.randn(N, dim, device=dev) / math.sqrt(2 * dim))
        self.C_re.copy_(torch.randn(dim, N, device=dev) / math.sqrt(N))
        self.C_im.copy_(torch.randn(dim, N, device=dev) / math.sqrt(N))
        self.D.copy_(torch.randn(dim, device=dev))

    def diagonal(self) -> Tensor:
        """``Lambda: [N]`` complex."""
        nu_log, theta_log = widen(self.nu_log, self.theta_log)  # complex needs float32 at least
        return torch.exp(torch.complex(-torch.exp(nu_log), torch.exp(theta_log)))

    def _drive(self, x: Tensor) -> Tensor:
        """``B_norm x_t = gamma * B x_t``, ``[B, T, N]`` complex."""
        gamma = torch.exp(self.gamma_log)[:, None]
        wide = wide_dtype(x.dtype)  # complex numbers need float32 at least (see ops/precision.py)
        # One real matmul with (re, im) interleaved rows, read as complex without a copy. Two
        # matmuls plus torch.complex (and, below, matmuls on the strided h.real / h.imag views)
        # made the layer 1.46x slower (forward + backward, T=4096, one CPU thread).
        W_in = rearrange([self.B_re * gamma, self.B_im * gamma], "two n d -> (n two) d")
        return torch.view_as_complex(rearrange((x @ W_in.T).to(wide), "b t (n two) -> b t n two", two=2))

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        lam, Bu = self.diagonal(), self._drive(x)
        wide = wide_dtype(x.dtype)
        h0 = None if state is None else torch.view_as_complex(state["h"].to(wide).contiguous())
        if self.mode == "reference":
            h, last = linear_scan_reference(lam, Bu, h0)
        elif x.shape[1] == 1 and h0 is not None:
            last = linear_scan_recurrent(lam, Bu[:, 0], h0)
            h = last[:, None]
        else:
            h, last = linear_scan_chunk(lam, Bu, h0, chunk_size=self.chunk_size)
        # the state stays in the scan's dtype (float32 for half layers): it is carried indefinitely
        return self._readout(x, h), {"h": torch.view_as_real(last)}

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        """Packed documents (see :meth:`TokenMixer.forward_packed`) in one scan whose decay is 0 at
        each document start (:func:`linear_scan_packed`). Mode ``reference`` runs each alone."""
        lengths = self._check_packed(x, cu_seqlens, states)
        if self.mode == "reference":
            return self._forward_split(x, lengths, states)
        h0 = None
        if states is not None:
            h0 = torch.cat([s["h"] for s in states]).to(wide_dtype(x.dtype))
            h0 = torch.view_as_complex(h0.contiguous())  # [N, state_dim]
        h, last = linear_scan_packed(self.diagonal(), self._drive(x), lengths, h0, chunk_size=self.chunk_size)
        return self._readout(x, h), [{"h": h_n} for h_n in torch.view_as_real(last).split(1)]

    def _readout(self, x: Tensor, h: Tensor) -> Tensor:
        """``y_t = Re(C h_t) + D * x_t`` from the states ``h: [B, T, N]`` complex."""
        W_out = rearrange([self.C_re, -self.C_im], "two d n -> d (n two)")  # Re(C h) = [Re h, Im h] . W_out
        return rearrange(torch.view_as_real(h), "b t n two -> b t (n two)").to(x.dtype) @ W_out.T + self.D * x

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"h": torch.zeros(batch_size, self.state_dim, 2, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return 2 * self.state_dim
