"""Stick-breaking attention as a plain loop over queries (the specification).

Stick-breaking attention (arXiv:2410.17980), for query ``i`` and key ``j <= i``::

    beta_ij = sigmoid(q_i . k_j * scale)
    A_ij    = beta_ij prod_{j<k<=i} (1 - beta_ik)
    o_i     = sum_{j<=i} A_ij v_j

The nearest key takes its share ``beta`` of the stick first and each earlier key a share of what
is left, so the weights sum to at most one and no position embedding is needed. Computed in log
space (``log beta = logsigmoid(z)``, ``log(1 - beta) = logsigmoid(-z)``), as the paper does.

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, H, K]``, ``v: [B, Tk, H, V]``; the queries are the last
``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def stick_breaking_reference(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """Return ``o: [B, Tq, H, V]``."""
    B, Tq, H, K = q.shape
    Tk = k.shape[1]
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        i = Tk - Tq + t
        z = torch.einsum("bhk,bshk->bsh", q[:, t], k[:, : i + 1]) * scale  # [B, i+1, H]
        # log of the stick left for key j: the shares 1 - beta_ik of the nearer keys k = j+1..i
        rest = F.logsigmoid(-z[:, 1:])
        left = torch.cat([rest.flip(1).cumsum(1).flip(1), torch.zeros_like(z[:, :1])], dim=1)
        weights = (F.logsigmoid(z) + left).exp()
        out[:, t] = torch.einsum("bsh,bshv->bhv", weights, v[:, : i + 1])
    return out
