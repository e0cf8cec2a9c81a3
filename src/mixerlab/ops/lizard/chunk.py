"""Lizard attention in its training form: the GLA chunk op plus blocked meta-window attention.

Shapes and the cache-index layout as in :mod:`mixerlab.ops.lizard.reference`. The linear branch is
:func:`~mixerlab.ops.linear_attention.linear_attention_chunk` (per-key-channel decay). The softmax
branch follows :func:`~mixerlab.ops.attention.attention_local_chunk`: positions are cut into blocks
of ``W``; block ``i``'s queries read blocks ``i - 1`` and ``i`` under a band mask, and here also the
``M`` meta keys, so each block attends to ``M + 2 W`` keys, O(T (M + W)) in all.

Meta keys and window keys are scored with differently rotated queries. One SDPA call still does
both: queries are ``[q_window, q_meta]`` (``2K`` channels), window keys ``[k, 0]`` and meta keys
``[0, k]``, so each dot product picks its own half; the scale is passed as ``K^-1/2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention

from mixerlab.ops.linear_attention import linear_attention_chunk


def _split_keys(k: Tensor, is_meta: Tensor) -> Tensor:
    """``[B, S, H, 2K]``: ``[0, k]`` where ``is_meta: [S]`` (bool), else ``[k, 0]``."""
    zeros = torch.zeros_like(k)
    return torch.where(is_meta[None, :, None, None], torch.cat([zeros, k], -1), torch.cat([k, zeros], -1))


def meta_window_attention_dense(
    q2: Tensor, k: Tensor, v: Tensor, window: int, num_meta: int, scale: float
) -> Tensor:
    """Meta-window attention as one masked ``[Tq, Tk]`` SDPA call (short inputs, decoding steps).

    ``q2: [B, Tq, H, 2K]`` is ``[q_window, q_meta]``; ``k, v: [B, Tk, H, K]`` in cache-index
    order (the first ``num_meta`` keys are the meta memory); ``scale`` is ``K^-1/2``. Returns
    ``[B, Tq, H, K]``. Also the decoding step of :mod:`mixerlab.ops.lizard.recurrent`.
    """
    Tq, Tk = q2.shape[1], k.shape[1]
    pos = torch.arange(Tk - Tq, Tk, device=k.device)[:, None]
    keys = torch.arange(Tk, device=k.device)
    is_meta = keys < num_meta
    mask = (keys[None] <= pos) & (is_meta[None] | (keys[None] > pos - window))
    q2, k2, v = (rearrange(t, "b t h d -> b h t d") for t in (q2, _split_keys(k, is_meta), v))
    o = scaled_dot_product_attention(q2, k2, v, attn_mask=mask, scale=scale)
    return rearrange(o, "b h t d -> b t h d")


def meta_window_attention_chunk(
    q_window: Tensor, q_meta: Tensor, k: Tensor, v: Tensor, *, window: int, num_meta: int
) -> Tensor:
    """Softmax over the meta memory and the window for every query: ``[B, Tq, H, K]``."""
    B, Tq, H, K = q_window.shape
    Tk = k.shape[1]
    scale = 1.0 / math.sqrt(K)
    q2 = torch.cat([q_window, q_meta], dim=-1)
    if Tk <= 2 * window or Tq == 1:  # one block pair covers everything: the dense form is as cheap
        return meta_window_attention_dense(q2, k, v, window, num_meta, scale)
    W, M, offset = window, min(num_meta, Tk), Tk - Tq
    n = -(-Tk // W)
    tail = n * W - Tk
    # Queries aligned with key positions (dummy queries for cached positions, dropped at the end).
    qb = rearrange(F.pad(q2, (0, 0, 0, 0, offset, tail)), "b (n w) h d -> (b n) h w d", w=W)
    kw = torch.cat([k, torch.zeros_like(k)], dim=-1)  # every key as a window key, [k, 0]
    kw, vw = (F.pad(t, (0, 0, 0, 0, W, tail)) for t in (kw, v))  # one leading block of padding
    kw, vw = (rearrange(t, "b (n w) h d -> b n w h d", w=W) for t in (kw, vw))
    k_pair, v_pair = (torch.cat([t[:, :-1], t[:, 1:]], dim=2) for t in (kw, vw))  # [B, n, 2W, H, *]
    k_meta = torch.cat([torch.zeros_like(k[:, :M]), k[:, :M]], dim=-1)[:, None].expand(B, n, M, H, 2 * K)
    v_meta = v[:, :M][:, None].expand(B, n, M, H, v.shape[-1])
    keys = rearrange(torch.cat([k_meta, k_pair], dim=2), "b n s h d -> (b n) h s d")
    values = rearrange(torch.cat([v_meta, v_pair], dim=2), "b n s h d -> (b n) h s d")
    block = torch.arange(n, device=k.device)[:, None, None]
    query = block * W + torch.arange(W, device=k.device)[None, :, None]  # [n, W, 1] positions
    key = block * W + torch.arange(2 * W, device=k.device)[None, None, :] - W  # [n, 1, 2W]
    window_ok = (key <= query) & (key > query - W) & (key >= num_meta)  # a meta key is read once
    meta_ok = torch.arange(M, device=k.device)[None, None, :] <= query  # [n, W, M]
    mask = torch.cat([meta_ok, window_ok], dim=-1)[None].expand(B, n, W, M + 2 * W)
    mask = rearrange(mask, "b n w s -> (b n) 1 w s")
    o = scaled_dot_product_attention(qb, keys, values, attn_mask=mask, scale=scale)
    return rearrange(o, "(b n) h w d -> b (n w) h d", n=n)[:, offset : offset + Tq]


def lizard_chunk(
    q_window: Tensor,
    q_meta: Tensor,
    k: Tensor,
    v: Tensor,
    phi_q: Tensor,
    phi_k: Tensor,
    log_decay: Tensor,
    alpha: Tensor,
    beta: Tensor,
    *,
    window: int,
    num_meta: int,
    initial_state: Tensor,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, Tq, H, K], S: [B, H, F, K])``; equal to :func:`lizard_reference`."""
    Tq, Tk = q_window.shape[1], k.shape[1]
    o_gla, S = linear_attention_chunk(
        phi_q,
        phi_k,
        v[:, Tk - Tq :],
        log_decay,
        initial_state=initial_state,
        chunk_size=chunk_size,
        subchunk_size=math.gcd(chunk_size, 16),
    )
    o_swa = meta_window_attention_chunk(q_window, q_meta, k, v, window=window, num_meta=num_meta)
    return alpha[:, None] * o_gla + beta[:, None] * o_swa, S
