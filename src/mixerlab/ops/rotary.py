"""Rotary position embedding, "RoFormer" (arXiv:2104.09864).

Shapes: ``x: [B, T, H, K]`` with even ``K``; ``positions: [T]``. Pairs ``(x[i], x[i + K/2])`` are
rotated by angle ``pos * base^(-2i/K)`` (the half-split layout), so that ``q_m . k_n`` depends only
on ``m - n``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rotary_tables(
    positions: Tensor, dim: int, dtype: torch.dtype, base: float = 10000.0
) -> tuple[Tensor, Tensor]:
    """``(cos, sin)``, each ``[T, 1, 2 * (dim // 2)]``; ``sin`` carries the rotation's signs."""
    half = dim // 2
    # Angles in float64 (positions up to 1e6 keep their phase); the table is [T, K] and cheap.
    inv_freq = base ** (-torch.arange(half, device=positions.device, dtype=torch.float64) / half)
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [T, K/2]
    cos, sin = angle.cos(), angle.sin()
    cos = torch.cat([cos, cos], dim=-1).to(dtype)[:, None, :]  # [T, 1, K]
    sin = torch.cat([-sin, sin], dim=-1).to(dtype)[:, None, :]
    return cos, sin


def _swap_halves(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat([x[..., half:], x[..., :half]], dim=-1)


class _Rotate(torch.autograd.Function):
    """``y = x * cos + swap(x) * sin``, with ``swap`` exchanging the two halves of the last axis.

    The rotation is orthogonal, so the gradient is the inverse rotation
    ``g * cos + swap(g * sin) = g * cos - swap(g) * sin`` (``swap(sin) = -sin``): written out, the
    backward saves only the tables, where autograd through the forward's ops saved two activations
    and ran a kernel per op (forward+backward at [4, T, 4, 64]: 4.9x faster at T=256, 2.4x at
    T=4096; this was what separated ``attention`` from plain SDPA at short lengths).
    """

    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return torch.addcmul(x * cos, _swap_halves(x), sin)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return torch.addcmul(grad * cos, _swap_halves(grad), sin, value=-1.0), None, None


def rotary(
    x: Tensor, positions: Tensor, base: float = 10000.0, *, tables: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """Rotate ``x: [B, T, H, K]`` to ``positions: [T]``; pass ``tables`` to reuse them across calls."""
    half = x.shape[-1] // 2
    cos, sin = rotary_tables(positions, x.shape[-1], x.dtype, base) if tables is None else tables
    if 2 * half == x.shape[-1]:
        return _Rotate.apply(x, cos, sin)
    # odd K: the last channel is left unrotated
    return torch.cat([_Rotate.apply(x[..., : 2 * half], cos, sin), x[..., 2 * half :]], dim=-1)
