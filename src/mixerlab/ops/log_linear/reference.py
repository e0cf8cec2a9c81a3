"""Log-linear Mamba-2 as a plain loop over time steps (the specification).

Log-Linear Attention (arXiv:2506.04761) over Mamba-2's scalar-decay SSM. Token ``t``
(0-based absolute position) splits its prefix into Fenwick-tree buckets: ``s`` is in level
``l(t, s) = 0`` if ``s = t`` and ``bit_length(t xor s)`` otherwise, so level ``l >= 1`` is the block
of ``2^(l-1)`` tokens below the higher bits of ``t`` (non-empty when bit ``l-1`` of ``t`` is set)::

    h_t^(l) = sum_{s <= t, l(t, s) = l} exp(sum_{r=s+1..t} dt_r A) dt_s x_s B_s^T      ([P, N] per head)
    y_t     = sum_l lambda_t^(l) h_t^(l) C_t

Step ``t`` updates the buckets as a Fenwick tree does: with ``z`` the trailing zeros of ``t``, the
buckets ``0..z`` of ``t - 1`` merge into bucket ``z + 1``, buckets ``1..z`` empty, everything decays
by ``exp(dt_t A)`` and bucket 0 becomes the new token.

Shapes: ``x: [B, T, H, P]``, ``dt: [B, T, H]``, ``A: [H]``, ``B_, C_: [B, T, N]``,
``lam: [B, T, H, L_max]``; bucket states ``[B, L, H, P, N]`` with ``L = num_levels_after(position)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def bucket_level(t: int, s: int) -> int:
    """The Fenwick level of key position ``s`` for query position ``t >= s``."""
    return (t ^ s).bit_length()


def num_levels_after(num_tokens: int) -> int:
    """Buckets held after ``num_tokens`` tokens: the levels of the last query, ``0..bit_length(T-1)``
    (one empty level 0 before any token)."""
    return max(num_tokens - 1, 0).bit_length() + 1


def log_linear_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B_: Tensor,
    C_: Tensor,
    lam: Tensor,
    *,
    states: Tensor | None = None,
    position: int = 0,
) -> tuple[Tensor, Tensor]:
    """Return ``(y: [B, T, H, P], states: [B, L, H, P, N])`` after the last step; ``states`` holds
    the buckets of the ``position`` tokens already seen."""
    Bsz, T, H, P = x.shape
    N = B_.shape[-1]
    levels = list(x.new_zeros(Bsz, num_levels_after(position), H, P, N).unbind(1))
    if states is not None:
        levels = list(states.to(x.dtype).unbind(1))
    ys = []
    for i in range(T):
        t = position + i
        if len(levels) < num_levels_after(t + 1):
            levels.append(torch.zeros_like(levels[0]))
        if t > 0:
            z = (t & -t).bit_length() - 1  # trailing zeros of t
            merged = levels[0]
            for level in levels[1 : z + 1]:
                merged = merged + level
            levels = [levels[0]] + [torch.zeros_like(merged)] * z + [merged] + levels[z + 2 :]
        decay = torch.exp(dt[:, i] * A)[:, :, None, None]
        levels = [decay * level for level in levels]
        levels[0] = (dt[:, i, :, None] * x[:, i])[..., None] * B_[:, i, None, None, :]
        y = 0
        for l, level in enumerate(levels):
            y = y + lam[:, i, :, l, None] * (level * C_[:, i, None, None, :]).sum(-1)
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(Bsz, 0, H, P)
    return y, torch.stack(levels, dim=1)
