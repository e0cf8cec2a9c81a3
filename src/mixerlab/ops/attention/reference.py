"""Softmax attention as a plain loop over query positions (the specification).

"Attention Is All You Need" (arXiv:1706.03762), eq. 1, with a causal mask and an optional local
window (each query sees itself and the ``window - 1`` keys before it). With ``causal=False`` (the
encoder's form) a query sees every key, or with a window the ``window - 1`` keys on each side of
it (a symmetric window, as Longformer's local attention); queries and keys are then the same
positions (``Tq == Tk``).

``key_mask: [B, Tk]`` (bool, True = a real token) hides padded keys from every query, except that
a query always reads its own key: a padded query is then never left with nothing to read (its
output has no meaning), while a real query's own key is real anyway.

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, G, K]``, ``v: [B, Tk, G, V]`` with ``H`` a multiple of
``G`` (grouped-query heads: query head ``h`` reads key/value head ``h // (H // G)``). The queries
are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    window: int | None = None,
    causal: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    B, Tq, H, K = q.shape
    Tk, G = k.shape[1], k.shape[2]
    if not causal and Tq != Tk:
        raise ValueError(f"non-causal attention reads queries and keys at the same positions; {Tq=} {Tk=}")
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    group = H // G
    offset = Tk - Tq
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = offset + t
        start = 0 if window is None else max(0, pos - window + 1)
        stop = pos + 1 if causal else (Tk if window is None else min(Tk, pos + window))
        for h in range(H):
            keys = k[:, start:stop, h // group]  # [B, S, K]
            values = v[:, start:stop, h // group]  # [B, S, V]
            scores = torch.einsum("bk,bsk->bs", q[:, t, h], keys) * scale
            if key_mask is not None:
                readable = key_mask[:, start:stop].clone()
                readable[:, pos - start] = True  # its own key (see the module docstring)
                scores = scores.masked_fill(~readable, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out[:, t, h] = torch.einsum("bs,bsv->bv", weights, values)
    return out
