"""Causal long convolution as a plain sum per output step (the specification).

``y[t] = sum_{s=0}^{t} k[s] * u[t - s]`` per channel.

Shapes: ``u: [B, T, C]``; ``k: [L, C]`` with ``L >= T`` (taps beyond ``T - 1`` are never read).
"""

from __future__ import annotations

import torch
from torch import Tensor


def long_conv_reference(u: Tensor, k: Tensor, *, start: int = 0) -> Tensor:
    """Outputs ``t = start .. T-1`` of the causal convolution of ``u`` with ``k``: ``[B, T - start, C]``.

    ``start`` lets a caller that keeps the past inputs in front of ``u`` ask only for the new steps.
    """
    T = u.shape[1]
    # Reversed once, so every step's taps are a view: a per-step flip copied O(T^2 C) taps, all
    # kept for backward (17 GB at T=4096, C=512).
    k_rev = k[:T].flip(0)  # k_rev[T-1-j] = k[j]
    outs = []
    # Latest step first: each step's [B, t+1, C] product then fits in the block the previous one
    # freed; in increasing t every product needs a fresh block and the heap grows like T^2.
    for t in reversed(range(start, T)):
        taps = k_rev[T - 1 - t :]  # [t+1, C]: the tap for input s is k[t - s]
        outs.append((u[:, : t + 1] * taps).sum(dim=1))
    outs.reverse()
    if not outs:
        return u.new_zeros(u.shape[0], 0, u.shape[2])
    return torch.stack(outs, dim=1)
