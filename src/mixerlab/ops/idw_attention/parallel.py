"""Inverse-distance-weighting attention for all queries at once (the fast form).

The weights of :mod:`.reference` are a softmax of ``-(p / 2) log(||q||^2 + ||k||^2 - 2 q.k + eps)``,
so the squared distances come from one batched matrix product, as dot-product attention's scores
do, and the softmax runs over the visible keys (:func:`visible_keys`). Shapes as in the reference.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.attention.parallel import causal_mask


def visible_keys(Tq: int, Tk: int, causal: bool, key_mask: Tensor | None, device: torch.device) -> Tensor:
    """Boolean ``[B or 1, 1, Tq, Tk]``: True where a query reads a key (attention's visibility:
    causal or not, padded keys hidden but a query always reads its own key)."""
    allowed = causal_mask(Tq, Tk, None, device, causal=causal)[None, None]
    if key_mask is not None:
        own = torch.arange(Tk, device=device)[None, :] == torch.arange(Tk - Tq, Tk, device=device)[:, None]
        allowed = (allowed & key_mask[:, None, None, :]) | own
    return allowed


def idw_attention_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    power: float = 1.0,
    eps: float = 1e-6,
    causal: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    H, G = q.shape[2], k.shape[2]
    q = rearrange(q, "b t h k -> b h t k")
    k, v = (rearrange(t, "b s g k -> b g s k").repeat_interleave(H // G, dim=1) for t in (k, v))
    # float32 rounding can push the expanded square slightly below zero; the reference's is exact
    squared = (
        q.square().sum(-1, keepdim=True) + k.square().sum(-1)[:, :, None, :] - 2 * q @ k.transpose(-1, -2)
    )
    scores = -0.5 * power * torch.log(squared.clamp_min(0) + eps)  # [B, H, Tq, Tk]
    allowed = visible_keys(q.shape[2], k.shape[2], causal, key_mask, q.device)
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return rearrange(weights @ v, "b h t v -> b t h v")
