"""Forgetting attention in one masked matrix form (the fast form).

Shapes as in :mod:`mixerlab.ops.fox.reference`. With ``c = cumsum(log f)`` over the key positions,
``D_ij = c_i - c_j``, so the bias is one outer difference added to the scores before a causal
softmax (the paper's matrix view). ``D_ij <= 0`` for ``j <= i``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor


def fox_parallel(
    q: Tensor, k: Tensor, v: Tensor, log_forget: Tensor, *, scale: float | None = None
) -> Tensor:
    """Return ``o: [B, Tq, H, V]``; equal to :func:`~mixerlab.ops.fox.fox_reference`."""
    Tq, Tk, K = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    c = rearrange(log_forget.cumsum(1), "b s h -> b h s")
    bias = c[..., Tk - Tq :, None] - c[..., None, :]  # [B, H, Tq, Tk]
    scores = torch.einsum("bthk,bshk->bhts", q, k) * scale + bias
    pos = torch.arange(Tk - Tq, Tk, device=q.device)[:, None]
    scores = scores.masked_fill(torch.arange(Tk, device=q.device)[None, :] > pos, float("-inf"))
    return torch.einsum("bhts,bshv->bthv", torch.softmax(scores, dim=-1), v)
