"""Causal sliding-window attention in blocks: O(T w) time and memory instead of O(T^2).

Shapes as in :mod:`mixerlab.ops.attention.reference`. The (position-aligned) sequence is cut into
blocks of ``window`` positions; the queries of block ``i`` can only see keys of blocks ``i - 1``
and ``i``, so each block attends to ``2 * window`` keys under a fixed band mask. A cached prefix
(``Tk > Tq``) is handled by giving the cached positions dummy queries whose outputs are dropped.

With ``causal=False`` the window is symmetric (``|t - s| < window``, as in the reference), so the
queries of block ``i`` read blocks ``i - 1``, ``i`` and ``i + 1``: ``3 * window`` keys under a band
mask, still O(T w). ``key_mask`` (non-causal only) hides padded keys as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention

from mixerlab.ops.attention.parallel import attention_parallel


def attention_local_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    scale: float | None = None,
    causal: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    Tq, Tk = q.shape[1], k.shape[1]
    if not causal:
        return _symmetric_local_chunk(q, k, v, window=window, scale=scale, key_mask=key_mask)
    if key_mask is not None:
        raise ValueError("key_mask is only supported with causal=False")
    if Tk <= 2 * window:  # a single pair of blocks: the masked dense form is as cheap
        return attention_parallel(q, k, v, scale=scale, window=window)
    W, offset = window, Tk - Tq
    n = -(-Tk // W)
    tail = n * W - Tk
    # Align queries with key positions: dummy queries for cached positions, zero padding at the end.
    q = F.pad(q, (0, 0, 0, 0, offset, tail))
    k, v = (F.pad(t, (0, 0, 0, 0, W, tail)) for t in (k, v))  # one leading block of padding keys
    qb = rearrange(q, "b (n w) h d -> (b n) h w d", w=W)
    kb = rearrange(k, "b (n w) g d -> b n w g d", w=W)
    vb = rearrange(v, "b (n w) g d -> b n w g d", w=W)
    # Keys of block i (in padded numbering i + 1) are the padded blocks i and i + 1: [B, n, 2W, G, D].
    k2 = torch.cat([kb[:, :-1], kb[:, 1:]], dim=2)
    v2 = torch.cat([vb[:, :-1], vb[:, 1:]], dim=2)
    k2, v2 = (rearrange(t, "b n s g d -> (b n) g s d") for t in (k2, v2))
    j = torch.arange(W, device=q.device)[:, None]
    m = torch.arange(2 * W, device=q.device)[None, :]
    band = (m > j) & (m <= j + W)  # key m of the pair is within the window of query j of the block
    mask = band.expand(n, W, 2 * W).clone()
    mask[0, :, :W] = False  # the padding block before the first real block
    mask = mask.repeat(q.shape[0], 1, 1)[:, None]  # [(B n), 1, W, 2W]
    o = scaled_dot_product_attention(
        qb, k2, v2, attn_mask=mask, scale=scale, enable_gqa=qb.shape[1] != k2.shape[1]
    )
    o = rearrange(o, "(b n) h w d -> b (n w) h d", n=n)
    return o[:, offset : offset + Tq]


def _symmetric_local_chunk(
    q: Tensor, k: Tensor, v: Tensor, *, window: int, scale: float | None, key_mask: Tensor | None
) -> Tensor:
    """Non-causal local attention, ``|t - s| < window``, in blocks of ``window`` queries."""
    B, T = q.shape[:2]
    if k.shape[1] != T:
        raise ValueError(
            f"non-causal attention reads queries and keys at the same positions; {T=} {k.shape[1]=}"
        )
    if q.shape[1] <= 3 * window:  # one block triple covers everything: the masked dense form is as cheap
        return attention_parallel(q, k, v, scale=scale, window=window, causal=False, key_mask=key_mask)
    W = window
    n = -(-T // W)
    tail = n * W - T
    real = torch.ones(B, T, dtype=torch.bool, device=q.device) if key_mask is None else key_mask
    # One block of padding keys on each side; padding keys are never read (real = False there).
    q = F.pad(q, (0, 0, 0, 0, 0, tail))
    k, v = (F.pad(t, (0, 0, 0, 0, W, tail + W)) for t in (k, v))
    real = F.pad(real, (W, tail + W), value=False)
    qb = rearrange(q, "b (n w) h d -> (b n) h w d", w=W)
    kb, vb = (rearrange(t, "b (n w) g d -> b n w g d", w=W) for t in (k, v))
    rb = rearrange(real, "b (n w) -> b n w", w=W)
    # Keys of block i (padded blocks i, i + 1, i + 2): [B, n, 3W, G, D]; key m sits at i W + m - W.
    k3, v3 = (torch.cat([t[:, :-2], t[:, 1:-1], t[:, 2:]], dim=2) for t in (kb, vb))
    k3, v3 = (rearrange(t, "b n s g d -> (b n) g s d") for t in (k3, v3))
    r3 = rearrange(torch.cat([rb[:, :-2], rb[:, 1:-1], rb[:, 2:]], dim=2), "b n s -> (b n) 1 1 s")
    j = torch.arange(W, device=q.device)[:, None]
    m = torch.arange(3 * W, device=q.device)[None, :]
    band = (m - W - j).abs() < W  # key m is within the window of query j of the block
    own = m - W == j  # every query keeps its own key (see the reference)
    mask = (band & r3) | own  # [(B n), 1, W, 3W]
    o = scaled_dot_product_attention(
        qb, k3, v3, attn_mask=mask, scale=scale, enable_gqa=qb.shape[1] != k3.shape[1]
    )
    return rearrange(o, "(b n) h w d -> b (n w) h d", n=n)[:, :T]
