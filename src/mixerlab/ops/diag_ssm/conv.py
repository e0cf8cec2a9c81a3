"""Diagonal SSM as a long convolution (training form) plus the initial-state terms in closed form.

Unrolling ``h_t = dA h_{t-1} + dB x_t`` from ``h_{-1} = h0`` gives::

    y_t     = sum_{s<=t} K[t-s] x_s + D x_t + 2 Re(sum_m C_m dA_m^(t+1) h0_m)
    K[l]    = 2 Re(sum_m C_m dB_m dA_m^l)
    h_{T-1} = dA^T h0 + sum_s dA^(T-1-s) dB x_s

so a whole sequence is one FFT convolution plus Vandermonde contractions, with no loop over time.

The Vandermonde powers are factorised: with ``t = c J + j`` and ``J = ceil(sqrt(T))``,
``dA^t = dA^j dA^(J c)``, so every sum over ``t`` or ``m`` is a matmul against ``[H, M, J]`` and
``[H, M, T / J]`` power tables instead of one ``[H, M, T]`` table (which at ``T=4096, H=256,
M=32`` is 2 x 134 MB plus as much again saved for backward). Powers are ``exp(e * dtA)`` built
from real ``exp``/``cos``/``sin`` (vectorised on CPUs, unlike complex ``exp``), so every factor is
computed directly, never by repeated products, and the contractions are real matmuls.

Shapes as in :mod:`mixerlab.ops.diag_ssm.reference`; ``D`` may be None (no skip term).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.precision import wide_dtype


def _powers(dtA: Tensor, exponents: Tensor) -> Tensor:
    """``dA ** e`` for each exponent ``e``, complex: ``[L, H, M]``."""
    return torch.exp(exponents.to(dtA.real.dtype)[:, None, None] * dtA[None])


def _powers_re_im(dtA: Tensor, exponents: Tensor) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of ``dA ** e = exp(e dtA)`` for each exponent ``e``: ``[H, M, L]``."""
    exponents = exponents.to(dtA.real.dtype)
    magnitude = torch.exp(dtA.real[..., None] * exponents)
    angle = dtA.imag[..., None] * exponents
    return magnitude * torch.cos(angle), magnitude * torch.sin(angle)


class _Tables:
    """Power tables: ``lo = dA^j`` for ``j <= J`` (``[H, M, J + 1]``), ``hi = dA^(J c)`` for ``c < Nc``."""

    def __init__(self, dtA: Tensor, length: int) -> None:
        self.T = length
        self.J = math.isqrt(max(length - 1, 0)) + 1  # ceil(sqrt(T)) for T >= 1
        self.Nc = max(1, -(-length // self.J))
        self.lo_re, self.lo_im = _powers_re_im(dtA, torch.arange(self.J + 1, device=dtA.device))
        self.hi_re, self.hi_im = _powers_re_im(dtA, self.J * torch.arange(self.Nc, device=dtA.device))

    def expand(self, x_re: Tensor, x_im: Tensor, eq: str) -> Tensor:
        """``2 Re(sum_m x_mj dA_m^(J c))`` for ``x: [.., M, J]``, laid out as ``[.., T]``."""
        out = 2 * (torch.einsum(eq, x_re, self.hi_re) - torch.einsum(eq, x_im, self.hi_im))
        return rearrange(out, "... j c -> ... (c j)")[..., : self.T]

    def kernel(self, CB: Tensor) -> Tensor:
        """``K: [H, T]`` from ``CB = C dB: [H, M]``."""
        lo_re, lo_im, CB = self.lo_re[..., : self.J], self.lo_im[..., : self.J], CB[..., None]
        return self.expand(
            CB.real * lo_re - CB.imag * lo_im, CB.real * lo_im + CB.imag * lo_re, "hmj,hmc->hjc"
        )


def diag_ssm_kernel(dtA: Tensor, dB: Tensor, C: Tensor, length: int) -> Tensor:
    """Convolution kernel ``K: [length, H]`` (real), ``K[l] = 2 Re(sum_m C_m dB_m dA_m^l)``."""
    if length == 0:
        return dtA.real.new_zeros(0, dtA.shape[0])
    return rearrange(_Tables(dtA, length).kernel(C * dB), "h l -> l h")


def diag_ssm_conv(
    x: Tensor, dtA: Tensor, dB: Tensor, C: Tensor, D: Tensor | None = None, h0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``y: [B, T, H, E]`` (in ``x``'s dtype, widened from half) and the last state ``[B, H, E, M]``."""
    B, T, H, E = x.shape
    real = torch.promote_types(wide_dtype(x.dtype), dtA.real.dtype)
    cplx = torch.promote_types(real, torch.complex64)
    dtA, dB, C = dtA.to(cplx), dB.to(cplx), C.to(cplx)
    # Heads lead and the (batch, channel) pairs share one axis N: every contraction below is then a
    # batched matmul over heads with no transposed copy (and traces under torch.compile).
    u = rearrange(x.to(real), "b t h e -> h (b e) t")
    if T == 0:
        last = u.new_zeros(B, H, E, dtA.shape[-1], dtype=cplx) if h0 is None else h0.to(cplx)
        return x.new_zeros(x.shape, dtype=real), last
    tables = _Tables(dtA, T)
    J, Nc = tables.J, tables.Nc
    n = 2 * T  # zero padding to 2T turns the circular FFT convolution into a causal linear one
    K_f = torch.fft.rfft(tables.kernel(C * dB), n=n)  # [H, n // 2 + 1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * K_f[:, None], n=n)[..., :T]  # [H, N, T]
    # Last state: sum_s dA^(T-1-s) dB u_s = dB sum_r dA^r u_(T-1-r), over reversed time in blocks.
    u_blk = rearrange(F.pad(u.flip(-1), (0, Nc * J - T)), "h n (c j) -> h n c j", j=J)
    lo_re, lo_im = tables.lo_re[..., :J], tables.lo_im[..., :J]
    Z_re = torch.einsum("hncj,hmj->hncm", u_blk, lo_re)  # sum_j u dA^j, per block c
    Z_im = torch.einsum("hncj,hmj->hncm", u_blk, lo_im)
    hi_re, hi_im = tables.hi_re, tables.hi_im
    acc = torch.complex(
        torch.einsum("hncm,hmc->hnm", Z_re, hi_re) - torch.einsum("hncm,hmc->hnm", Z_im, hi_im),
        torch.einsum("hncm,hmc->hnm", Z_re, hi_im) + torch.einsum("hncm,hmc->hnm", Z_im, hi_re),
    )
    last = dB[:, None] * acc  # [H, N, M]
    if h0 is not None:
        h0 = rearrange(h0.to(cplx), "b h e m -> h (b e) m")
        w = (C[:, None] * h0)[..., None]  # [H, N, M, 1]; y_t gains 2 Re(sum_m w_m dA_m^(t+1))
        nxt_re, nxt_im = tables.lo_re[:, None, :, 1:], tables.lo_im[:, None, :, 1:]  # [H, 1, M, J]
        y = y + tables.expand(
            w.real * nxt_re - w.imag * nxt_im, w.real * nxt_im + w.imag * nxt_re, "hnmj,hmc->hnjc"
        )
        end_re, end_im = _powers_re_im(dtA, torch.tensor([T], device=x.device))
        last = last + torch.complex(end_re[..., 0], end_im[..., 0])[:, None] * h0
    y = rearrange(y, "h (b e) t -> b t h e", b=B)
    last = rearrange(last, "h (b e) m -> b h e m", b=B)
    if D is not None:
        y = y + D[:, None] * x
    return y, last
