"""Kimi Delta Attention's chunked and one-step forms, through RWKV-7's diagonal-plus-rank-one op.

``(I - beta k k^T) diag(alpha) S = diag(alpha) S + (beta k) ((-alpha k)^T S)``, so KDA is
``ops.rwkv7`` with ``log_w = g``, ``a = -exp(g) k``, ``b = beta k`` and the written key ``beta k``.
Shapes as in :mod:`mixerlab.ops.kda.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.rwkv7 import rwkv7_chunk, rwkv7_recurrent


def kda_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
    chunk_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bk = beta[..., None] * k
    return rwkv7_chunk(q, g, bk, v, -torch.exp(g) * k, bk, state=state, scale=scale, chunk_size=chunk_size)


def kda_recurrent(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor, *, scale: float | None = None
) -> tuple[Tensor, Tensor]:
    """One step: ``q, k, g: [B, H, K]``, ``v: [B, H, V]``, ``beta: [B, H]`` -> ``(o: [B, H, V], state)``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bk = beta[..., None] * k
    return rwkv7_recurrent(q, g, bk, v, -torch.exp(g) * k, bk, state, scale=scale)
