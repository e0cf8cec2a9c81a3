"""Causal long convolution as one batched matmul with a Toeplitz matrix, O(T^2) (short sequences).

For each channel ``c`` the outputs are ``y[:, t, c] = sum_{s <= t} k[t - s, c] u[:, s, c]``, i.e.
``y_c = K_c u_c`` with the lower-triangular Toeplitz matrix ``K_c[t, s] = k[t - s, c]`` (zero above
the diagonal). At the lengths of small testbed models this is one ``[C, T, T] @ [C, T, B]`` matmul
instead of two real FFTs of length ``2T``, a complex product and an inverse FFT; forward+backward at
``B = C = 64`` (one thread) it was 1.6x faster than :func:`~mixerlab.ops.long_conv.long_conv_fft`
at ``T = 32`` and ``64`` and 0.75x at ``T = 128`` (see :data:`TOEPLITZ_MAX_LEN`).

Shapes: ``u: [B, T, C]``; ``k: [L, C]`` with ``L >= T``; output ``[B, T - start, C]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

# The longest sequence for which callers should prefer this form to the FFT (measured crossover
# between T = 64 and T = 128 on a CPU, forward and backward).
TOEPLITZ_MAX_LEN = 64


def long_conv_toeplitz(u: Tensor, k: Tensor, *, start: int = 0) -> Tensor:
    """Outputs ``t = start .. T-1`` of ``y[t] = sum_{s<=t} k[s] u[t-s]``: ``[B, T - start, C]``."""
    T = u.shape[1]
    t = torch.arange(T, device=u.device)
    lag = t[start:, None] - t[None, :]  # [T - start, T]: t - s
    # Gather k at every lag (negative lags read tap 0 and are masked to zero: causality).
    toeplitz = k[:T][lag.clamp(min=0)] * (lag >= 0)[..., None].to(k.dtype)  # [T - start, T, C]
    y = rearrange(toeplitz, "t s c -> c t s") @ rearrange(u, "b s c -> c s b")  # [C, T - start, B]
    return rearrange(y, "c t b -> b t c")
