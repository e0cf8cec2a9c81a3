"""Forgetting attention as a plain loop over queries (the specification).

Forgetting Transformer (arXiv:2503.02130): for query ``i`` and key ``j <= i``::

    D_ij = sum_{l=j+1..i} log f_l
    o_i  = sum_{j<=i} softmax_j(q_i . k_j * scale + D_ij) v_j

Shapes: ``q: [B, Tq, H, K]``; ``k: [B, Tk, H, K]``, ``v: [B, Tk, H, V]`` and ``log_forget: [B, Tk, H]``
(``log f`` at every key position, ``<= 0``); the queries are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def fox_reference(
    q: Tensor, k: Tensor, v: Tensor, log_forget: Tensor, *, scale: float | None = None
) -> Tensor:
    """Return ``o: [B, Tq, H, V]``."""
    B, Tq, H, K = q.shape
    Tk = k.shape[1]
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        i = Tk - Tq + t
        scores = torch.einsum("bhk,bshk->bsh", q[:, t], k[:, : i + 1]) * scale  # [B, i+1, H]
        # D_ij = sum of the gates l = j+1..i: a sum from the right over gates 1..i, then D_ii = 0
        gates = log_forget[:, 1 : i + 1]
        bias = torch.cat([gates.flip(1).cumsum(1).flip(1), torch.zeros_like(log_forget[:, :1])], dim=1)
        weights = torch.softmax(scores + bias, dim=1)
        out[:, t] = torch.einsum("bsh,bshv->bhv", weights, v[:, : i + 1])
    return out
