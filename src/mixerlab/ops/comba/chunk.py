"""Comba's chunked and one-step forms, through RWKV-7's diagonal-plus-rank-one op.

``alpha (I - beta k p^T) S = diag(alpha 1) S + (beta k) ((-alpha p)^T S)``, so Comba is
``ops.rwkv7`` with one log-decay per head (its ``[B, T, H, 1]`` form), ``a = -alpha p``,
``b = beta k`` and the written key ``beta k``. Shapes as in :mod:`mixerlab.ops.comba.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.rwkv7 import rwkv7_chunk, rwkv7_recurrent


def comba_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p: Tensor,
    beta: Tensor,
    g: Tensor,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
    chunk_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bk = beta[..., None] * k
    log_w = g[..., None]  # [B, T, H, 1]: one decay per head
    a = -torch.exp(g)[..., None] * p
    return rwkv7_chunk(q, log_w, bk, v, a, bk, state=state, scale=scale, chunk_size=chunk_size)


def comba_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p: Tensor,
    beta: Tensor,
    g: Tensor,
    state: Tensor,
    *,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One step: ``q, k, p: [B, H, K]``, ``v: [B, H, V]``, ``beta, g: [B, H]`` -> ``(o, state)``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bk = beta[..., None] * k
    a = -torch.exp(g)[..., None] * p
    return rwkv7_recurrent(q, g[..., None].expand_as(k), bk, v, a, bk, state, scale=scale)
