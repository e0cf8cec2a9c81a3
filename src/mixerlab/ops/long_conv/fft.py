"""Causal long convolution through the FFT, O(T log T) (the fast form).

Zero-padding both signals to at least ``2T`` makes the circular convolution computed by the FFT
equal the linear one on the first ``T`` outputs, so no output reads the future.

Shapes: ``u: [B, T, C]``; ``k: [L, C]`` with ``L >= T``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.precision import wide_dtype


def long_conv_fft(u: Tensor, k: Tensor, *, start: int = 0) -> Tensor:
    """Outputs ``t = start .. T-1`` of ``y[t] = sum_{s<=t} k[s] u[t-s]``: ``[B, T - start, C]``."""
    T = u.shape[1]
    n = 2 * T
    # rfft on float32/float64 only; half precision inputs are widened and cast back.
    work = wide_dtype(u.dtype)
    # Transforms run along the last axis: the layout the FFT libraries handle fastest, and the
    # memory order of inputs that come out of a channels-first conv1d (free transposes).
    u_f = torch.fft.rfft(rearrange(u.to(work), "b t c -> b c t"), n=n)
    k_f = torch.fft.rfft(rearrange(k[:T].to(work), "t c -> c t"), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., start:T]
    return rearrange(y, "b c t -> b t c").to(u.dtype)
