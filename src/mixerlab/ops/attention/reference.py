"""Causal softmax attention as a plain loop over query positions (the specification).

"Attention Is All You Need" (arXiv:1706.03762), eq. 1, with a causal mask and an optional local
window (each query sees itself and the ``window - 1`` keys before it).

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, G, K]``, ``v: [B, Tk, G, V]`` with ``H`` a multiple of
``G`` (grouped-query heads: query head ``h`` reads key/value head ``h // (H // G)``). The queries
are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def attention_reference(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None, window: int | None = None
) -> Tensor:
    B, Tq, H, K = q.shape
    Tk, G = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    group = H // G
    offset = Tk - Tq
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = offset + t
        start = 0 if window is None else max(0, pos - window + 1)
        for h in range(H):
            keys = k[:, start : pos + 1, h // group]  # [B, S, K]
            values = v[:, start : pos + 1, h // group]  # [B, S, V]
            scores = torch.einsum("bk,bsk->bs", q[:, t, h], keys) * scale
            weights = torch.softmax(scores, dim=-1)
            out[:, t, h] = torch.einsum("bs,bsv->bv", weights, values)
    return out
