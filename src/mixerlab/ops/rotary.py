"""Rotary position embedding, "RoFormer" (arXiv:2104.09864).

Shapes: ``x: [B, T, H, K]`` with even ``K``; ``positions: [T]``. Pairs ``(x[i], x[i + K/2])`` are
rotated by angle ``pos * base^(-2i/K)`` (the half-split layout), so that ``q_m . k_n`` depends only
on ``m - n``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [T, K/2]
    cos = angle.cos().to(x.dtype)[None, :, None, :]
    sin = angle.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    if 2 * half != x.shape[-1]:  # odd K: the last channel is left unrotated
        rotated = torch.cat([rotated, x[..., 2 * half :]], dim=-1)
    return rotated
