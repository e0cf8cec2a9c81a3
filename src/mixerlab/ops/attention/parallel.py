"""Softmax attention on ``scaled_dot_product_attention`` (the fast form).

Shapes as in :mod:`mixerlab.ops.attention.reference`. With no cached prefix and no window the
fused causal kernel is used; otherwise an explicit boolean mask aligns query ``t`` with key
position ``Tk - Tq + t`` (SDPA's own ``is_causal`` aligns top-left, which is wrong with a cache).
``causal=False`` (symmetric window) and ``key_mask`` are as in the reference.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention


def causal_mask(Tq: int, Tk: int, window: int | None, device: torch.device, *, causal: bool = True) -> Tensor:
    """``[Tq, Tk]`` boolean mask, True where query ``t`` may read key ``s``."""
    pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]
    keys = torch.arange(Tk, device=device)[None, :]
    allowed = keys <= pos if causal else torch.ones(Tq, Tk, dtype=torch.bool, device=device)
    if window is not None:
        allowed = allowed & ((keys - pos).abs() < window if not causal else keys > pos - window)
    return allowed


def attention_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    window: int | None = None,
    causal: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    Tq, Tk = q.shape[1], k.shape[1]
    if not causal and Tq != Tk:
        raise ValueError(f"non-causal attention reads queries and keys at the same positions; {Tq=} {Tk=}")
    q, k, v = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    gqa = q.shape[1] != k.shape[1]
    if not causal or key_mask is not None:
        mask = None if window is None and not causal else causal_mask(Tq, Tk, window, q.device, causal=causal)
        if key_mask is not None:
            # Padded keys are hidden, but every query keeps its own key (see the reference).
            own = (
                torch.arange(Tk, device=q.device)[None, :]
                == torch.arange(Tk - Tq, Tk, device=q.device)[:, None]
            )
            readable = key_mask[:, None, None, :]  # [B, 1, 1, Tk]
            mask = (readable if mask is None else readable & mask) | own
        o = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    elif window is None and Tq == Tk:
        o = scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    elif window is None and Tq == 1:
        o = scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
    else:
        mask = causal_mask(Tq, Tk, window, q.device)
        o = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    return rearrange(o, "b h t v -> b t h v")
