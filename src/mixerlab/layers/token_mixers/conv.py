"""Long-convolution token mixers: ``hyena`` (implicit long filters) and ``h3`` (shift + diagonal SSM).

Shapes: ``x: [B, T, D]``; Hyena's ``N = order`` gates and long-conv inputs ``[B, T, N, D]`` and its
filters ``[L, N, D]``; H3's heads ``[B, T, H, K]`` with ``K = D / H`` and the diagonal-SSM input
``[B, T, H, K*K]`` (one channel per key/value pair of a head), ``M = state_dim // 2`` complex modes.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.diag_ssm import diag_ssm_conv, diag_ssm_outer_chunk, diag_ssm_recurrent, diag_ssm_reference
from mixerlab.ops.long_conv import (
    TOEPLITZ_MAX_LEN,
    long_conv_fft,
    long_conv_recurrent,
    long_conv_reference,
    long_conv_toeplitz,
)
from mixerlab.ops.precision import widen
from mixerlab.registry import TOKEN_MIXERS


class _Sin(nn.Module):
    """``sin(freq * x)`` with a learned frequency per feature (the Hyena filter activation)."""

    def __init__(self, width: int, freq: float) -> None:
        super().__init__()
        self.init_freq = float(freq)
        self.freq = nn.Parameter(torch.empty(width))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.constant_(self.freq, self.init_freq)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """Implicit long filter ``h[t] = FFN(PE(t)) * window(t)`` for ``channels`` channels.

    ``PE(t) = [t / L, cos(2 pi f t / L), sin(2 pi f t / L)]`` for ``(emb_dim - 1) / 2`` frequencies
    ``f`` in ``[1e-4, bands - 1]`` with ``L = max_len``; the FFN alternates linear layers and learned-
    frequency sines; the window ``exp(-a_c t / L)`` has per-channel rates spread so that the
    fastest channel decays to 1% within 30% of ``L`` and the slowest within 150% (the authors'
    defaults). Normalising by ``max_len`` rather than by the call's length makes ``h[t]`` a
    function of ``t`` alone, which is what lets a sequence be split into several calls.
    """

    def __init__(self, channels: int, emb_dim: int, hidden: int, depth: int, max_len: int) -> None:
        super().__init__()
        self.emb_dim, self.max_len = emb_dim, max_len
        layers: list[nn.Module] = [nn.Linear(emb_dim, hidden), _Sin(hidden, 1.0)]
        for _ in range(depth):
            layers += [nn.Linear(hidden, hidden), _Sin(hidden, 1.0)]
        layers.append(nn.Linear(hidden, channels, bias=False))
        self.ffn = nn.Sequential(*layers)
        self.register_buffer("rates", torch.empty(channels), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The window's decay rates: computed from the options, not learned (so recomputed here,
        which a meta-built filter needs after ``to_empty``)."""
        target, fast, slow = 1e-2, 0.3, 1.5
        channels, dev = self.rates.numel(), self.rates.device
        rates = torch.linspace(math.log(target) / slow, math.log(target) / fast, channels, device=dev)
        self.rates.copy_(rates.abs())

    def forward(self, length: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Taps ``0 .. length-1``: ``[length, channels]``."""
        t = torch.arange(length, device=device, dtype=dtype)[:, None] / self.max_len  # [L, 1]
        bands = (self.emb_dim - 1) // 2
        freqs = torch.linspace(1e-4, bands - 1, bands, device=device, dtype=dtype)[None, :]
        angle = 2 * math.pi * freqs * t  # [L, bands]
        pe = torch.cat([t, angle.cos(), -angle.sin()], dim=-1)
        window = torch.exp(-t * self.rates.to(dtype))
        return self.ffn(pe) * window


@TOKEN_MIXERS.register(
    "hyena",
    paper="Hyena Hierarchy: Towards Larger Convolutional Language Models",
    arxiv="2302.10866",
    test_kwargs={"dim": 16, "order": 2, "filter_dim": 8, "filter_emb_dim": 5, "max_len": 64},
    meta={
        "state": "(W-1)(N+1) D + T N D (short-conv tails + every long-conv input so far)",
        "time": "O(T log T N D + T D^2)",
        "memory": "O(T N D)",
        "state_kind": "growing",
    },
)
class Hyena(TokenMixer):
    """Hyena operator, "Hyena Hierarchy: Towards Larger Convolutional Language Models" (arXiv:2302.10866).

    With ``N = order`` (the paper's order-``N`` recurrence, section 3)::

        (v, x^1, ..., x^N) = short_conv(x W_in)              # N + 1 projections, W-tap depthwise conv
        z^1 = v;   z^{n+1} = x^n * (h^n (*) z^n + d^n * z^n)  # (*) causal long convolution
        y = z^{N+1} W_out

    ``h^n`` are implicit filters (:class:`HyenaFilter`), ``d^n`` the per-channel bias (skip) term.
    The paper's order-``N`` operator has ``N`` long filters; the authors' code calls that order
    ``N + 1`` (its last gate multiplies without a convolution). Defaults follow the authors' code:
    ``conv_size=3``, filter width 64 with two inner layers and a 33-feature positional encoding.

    The filter is defined on ``0 .. max_len-1``; longer sequences (counting earlier calls) raise a
    ``ConfigError``. Decoding keeps every past long-conv input (``state_kind`` "growing"):
    ``{"conv": [B, W-1, (N+1) D], "history": [B, S, N, D]}``. Modes: ``"fft"`` (FFT convolution,
    zero-padded to ``2T``; up to ``TOEPLITZ_MAX_LEN = 64`` steps one Toeplitz matmul, which is
    faster there) and ``"reference"`` (direct per-step sums).
    """

    modes = ("fft", "reference")

    def __init__(
        self,
        dim: int,
        order: int = 2,
        conv_size: int = 3,
        filter_dim: int = 64,
        filter_depth: int = 2,
        filter_emb_dim: int = 33,
        max_len: int = 2048,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = "hyena"
        for field, value in (
            ("dim", dim),
            ("order", order),
            ("conv_size", conv_size),
            ("filter_dim", filter_dim),
            ("max_len", max_len),
        ):
            check_positive_int(name, field, value)
        check(
            isinstance(filter_depth, int) and filter_depth >= 0,
            name,
            "filter_depth",
            filter_depth,
            "expected an integer >= 0",
        )
        check(
            isinstance(filter_emb_dim, int) and filter_emb_dim >= 3 and filter_emb_dim % 2 == 1,
            name,
            "filter_emb_dim",
            filter_emb_dim,
            "expected an odd integer >= 3 (time plus cos/sin pairs)",
        )
        self.dim, self.order, self.conv_size, self.max_len = dim, order, conv_size, max_len
        width = (order + 1) * dim
        self.in_proj = nn.Linear(dim, width, bias=bias)
        self.conv = ShortConv(width, conv_size, bias=bias, owner=name)
        load_legacy_conv_keys(self, "conv")
        self.filter = HyenaFilter(order * dim, filter_emb_dim, filter_dim, filter_depth, max_len)
        self.skip = nn.Parameter(torch.empty(order, dim))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The per-order skip weights, ``N(0, 1)`` (filter and projections initialise themselves)."""
        self.skip.copy_(torch.randn(self.skip.shape, device=self.skip.device))

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        B, T, _ = x.shape
        N, D = self.order, self.dim
        past = 0 if state is None else state["history"].shape[1]
        if past + T > self.max_len:
            raise ConfigError(
                "hyena", "sequence length", past + T, f"the implicit filters end at max_len={self.max_len}"
            )
        conv_tail = None if state is None else state["conv"]
        u, conv_tail = self.conv(self.in_proj(x), conv_tail, reference=self.mode == "reference")
        u = rearrange(u, "b t (n d) -> b t n d", n=N + 1)
        v, gates = u[:, :, 0], u[:, :, 1:]  # [B, T, D], [B, T, N, D]
        h = rearrange(self.filter(past + T, x.device, x.dtype), "l (n d) -> l n d", n=N)
        history = x.new_zeros(B, 0, N, D) if state is None else state["history"]
        z, inputs = v, []
        for n in range(N):
            inputs.append(z)
            z = gates[:, :, n] * (self._long_conv(history[:, :, n], z, h[:, n]) + self.skip[n] * z)
        history = torch.cat([history, torch.stack(inputs, dim=2)], dim=1)
        return self.out_proj(z), {"conv": conv_tail, "history": history}

    def _long_conv(self, past: Tensor, z: Tensor, h: Tensor) -> Tensor:
        """Outputs at the new steps of ``h (*) [past, z]``: ``past: [B, S, D]``, ``z: [B, T, D]``."""
        if z.shape[1] == 1 and past.shape[1] > 0:
            # tap 0 meets the new input, taps 1.. the history: no copy of the history per step
            return long_conv_recurrent(past, h[1:])[:, None] + h[0] * z
        full, start = torch.cat([past, z], dim=1), past.shape[1]  # [B, S + T, D]
        if self.mode == "reference":
            return long_conv_reference(full, h, start=start)
        if full.shape[1] <= TOEPLITZ_MAX_LEN:  # short: one Toeplitz matmul beats three FFTs
            return long_conv_toeplitz(full, h, start=start)
        return long_conv_fft(full, h, start=start)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        N, D = self.order, self.dim
        return {
            "conv": self.conv.init_state(batch_size, **f),
            "history": torch.zeros(batch_size, 0, N, D, **f),
        }

    def state_size(self, seq_len: int) -> int:
        N, D = self.order, self.dim
        return self.conv.state_size() + seq_len * N * D


@TOKEN_MIXERS.register(
    "h3",
    paper="Hungry Hungry Hippos: Towards Language Modeling with State Space Models",
    arxiv="2212.14052",
    test_kwargs={"dim": 16, "num_heads": 4, "state_dim": 4, "conv_size": 4, "chunk_size": 8},
    meta={
        "state": "(W-1) D + H K^2 state_dim (shift tail + diagonal-SSM state)",
        "time": "O(T H K^2 state_dim + T chunk D + T D^2)",
        "memory": "O(T D + T / chunk H K^2 state_dim)",
        "state_kind": "fixed",
    },
)
class H3(TokenMixer):
    """H3 layer, "Hungry Hungry Hippos: Towards Language Modeling with State Space Models" (arXiv:2212.14052).

    Per head (Algorithm 1 of the paper), with ``q, k, v = x W_q, x W_k, x W_v`` split into ``H``
    heads of size ``K``::

        k~_t = SSM_shift(k)_t = sum_{j<W} c_j * k_{t-j}          # a W-tap depthwise causal conv
        o_t[j] = sum_i q_t[i] * SSM_diag(k~[i] * v[j])_t          # K*K channels per head
        y = o W_out

    ``SSM_diag`` is an S4D-Lin diagonal SSM (``A_m = -1/2 + i pi m``, ``B = 1``, learned complex
    ``C``, step ``dt`` per head in ``[1e-3, 1e-1]``, skip ``D``), shared by the ``K*K`` channels of
    a head. Training uses its convolution kernel through the FFT; decoding uses its recurrence, so
    the state is fixed: ``{"shift": [B, W-1, D], "ssm": [B, H, K*K, M, 2]}`` (real and imaginary
    parts of ``M = state_dim // 2`` complex modes). ``num_heads=None`` means head size 1
    (``H = D``), the authors' default; their shift SSM has ``W = 64`` taps (its state size), which
    is ``conv_size``'s default here (a :class:`~mixerlab.layers.short_conv.ShortConv` without
    bias). Modes: ``"auto"`` (default: ``"chunk"`` for heads of ``K >= 16``, else ``"fft"``),
    ``"chunk"`` (chunks of ``chunk_size`` tokens, a Toeplitz-masked ``q k^T`` inside a chunk and
    the SSM state across chunks, never forming the ``K*K`` channels; see
    :mod:`mixerlab.ops.diag_ssm.outer_chunk`), ``"fft"`` (the paper's FFT convolution over
    the ``K*K`` channels) and ``"reference"`` (per-step recurrences). Measured forward+backward at
    D=256, L=1024 (1 thread): K=64 chunk 12x faster than fft, K=16 1.2x, K=8 0.27x, K=4 0.09x.
    ``chunk_size=512`` keeps the time per token flat from L=1024 to 4096 (1024 is 10% faster at
    4096 but doubles the ``[B, H, c, c]`` score memory).
    """

    modes = ("auto", "chunk", "fft", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int | None = None,
        state_dim: int = 64,
        conv_size: int = 64,
        bias: bool = True,
        chunk_size: int = 512,
    ) -> None:
        super().__init__()
        name = "h3"
        check_positive_int(name, "dim", dim)
        check_positive_int(name, "chunk_size", chunk_size)
        self.chunk_size = chunk_size
        num_heads = dim if num_heads is None else num_heads
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "conv_size", conv_size)
        check(
            isinstance(state_dim, int) and state_dim >= 2 and state_dim % 2 == 0,
            name,
            "state_dim",
            state_dim,
            "expected an even integer >= 2 (complex conjugate pairs)",
        )
        self.dim, self.num_heads, self.state_dim, self.conv_size = dim, num_heads, state_dim, conv_size
        H, M = num_heads, state_dim // 2
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.shift = ShortConv(dim, conv_size, bias=False, owner=name)
        load_legacy_conv_keys(self, "shift")
        self.log_dt = nn.Parameter(torch.empty(H))
        self.log_neg_a_real = nn.Parameter(torch.empty(H, M))
        self.a_imag = nn.Parameter(torch.empty(H, M))
        self.c = nn.Parameter(torch.empty(H, M, 2))
        self.skip = nn.Parameter(torch.empty(H))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """S4D-Lin's diagonal SSM: ``dt`` log-uniform in [1e-3, 1e-1], ``A = -1/2 + i pi n``, ``C``
        complex normal of unit variance, ``skip`` N(0, 1)."""
        (H, M), dev = self.a_imag.shape, self.a_imag.device
        self.log_dt.uniform_(math.log(1e-3), math.log(1e-1))
        nn.init.constant_(self.log_neg_a_real, math.log(0.5))
        self.a_imag.copy_(math.pi * torch.arange(M, dtype=torch.float32, device=dev).repeat(H, 1))
        self.c.copy_(torch.randn(H, M, 2, device=dev) * math.sqrt(0.5))
        self.skip.copy_(torch.randn(H, device=dev))

    def _ssm_params(self) -> tuple[Tensor, Tensor, Tensor]:
        # complex numbers need float32 at least (ops/precision.py)
        log_neg_a_real, a_imag, log_dt, c = widen(self.log_neg_a_real, self.a_imag, self.log_dt, self.c)
        A = torch.complex(-torch.exp(log_neg_a_real), a_imag)  # [H, M]
        dtA = torch.exp(log_dt)[:, None] * A
        dB = (torch.exp(dtA) - 1) / A  # zero-order hold with B = 1
        return dtA, dB, torch.view_as_complex(c.contiguous())

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        T, H = x.shape[1], self.num_heads
        q, k, v = rearrange(self.qkv_proj(x), "b t (three d) -> three b t d", three=3)
        step = T == 1 and state is not None
        shift_tail = None if state is None else state["shift"]
        k, shift_tail = self.shift(k, shift_tail, reference=self.mode == "reference")
        dtA, dB, C = self._ssm_params()
        # the SSM runs in float32 for half layers, the projections around it in the layer's dtype
        q, k, v, skip = widen(q, k, v, self.skip)
        h0 = None if state is None else torch.view_as_complex(state["ssm"].to(q.dtype).contiguous())
        mode = self.mode
        if mode == "auto":
            mode = "chunk" if self.head_dim >= 16 else "fft"
        if not step and mode == "chunk":
            q, k, v = (rearrange(t, "b t (h i) -> b t h i", h=H) for t in (q, k, v))
            o, h = diag_ssm_outer_chunk(q, k, v, dtA, dB, C, skip, h0, chunk_size=self.chunk_size)
            y = self.out_proj(rearrange(o, "b t h j -> b t (h j)").to(x.dtype))
            return y, {"shift": shift_tail, "ssm": torch.view_as_real(h)}
        k = rearrange(k, "b t (h i) -> b t h i 1", h=H)
        v = rearrange(v, "b t (h j) -> b t h 1 j", h=H)
        kv = rearrange(k * v, "b t h i j -> b t h (i j)")
        if step:
            s, h = diag_ssm_recurrent(kv[:, 0], dtA, dB, C, skip, h0)
            s = s[:, None]
        elif self.mode == "reference":
            s, h = diag_ssm_reference(kv, dtA, dB, C, skip, h0)
        else:
            s, h = diag_ssm_conv(kv, dtA, dB, C, skip, h0)
        s = rearrange(s, "b t h (i j) -> b t h i j", i=self.head_dim)
        q = rearrange(q, "b t (h i) -> b t h i", h=H)
        o = torch.einsum("bthi,bthij->bthj", q, s)
        y = self.out_proj(rearrange(o, "b t h j -> b t (h j)").to(x.dtype))
        return y, {"shift": shift_tail, "ssm": torch.view_as_real(h)}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        K, M = self.head_dim, self.state_dim // 2
        return {
            "shift": self.shift.init_state(batch_size, **f),
            "ssm": torch.zeros(batch_size, self.num_heads, K * K, M, 2, **f),
        }

    def state_size(self, seq_len: int) -> int:
        K = self.head_dim
        return self.shift.state_size() + self.num_heads * K * K * self.state_dim
