"""Causal softmax attention on ``scaled_dot_product_attention`` (the fast form).

Shapes as in :mod:`mixerlab.ops.attention.reference`. With no cached prefix and no window the
fused causal kernel is used; otherwise an explicit boolean mask aligns query ``t`` with key
position ``Tk - Tq + t`` (SDPA's own ``is_causal`` aligns top-left, which is wrong with a cache).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention


def causal_mask(Tq: int, Tk: int, window: int | None, device: torch.device) -> Tensor:
    """``[Tq, Tk]`` boolean mask, True where query ``t`` may read key ``s``."""
    pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]
    keys = torch.arange(Tk, device=device)[None, :]
    allowed = keys <= pos
    if window is not None:
        allowed = allowed & (keys > pos - window)
    return allowed


def attention_parallel(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None, window: int | None = None
) -> Tensor:
    Tq, Tk = q.shape[1], k.shape[1]
    q, k, v = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    gqa = q.shape[1] != k.shape[1]
    if window is None and Tq == Tk:
        o = scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    elif window is None and Tq == 1:
        o = scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
    else:
        mask = causal_mask(Tq, Tk, window, q.device)
        o = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    return rearrange(o, "b h t v -> b t h v")
