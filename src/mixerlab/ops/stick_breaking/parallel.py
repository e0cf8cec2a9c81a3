"""Stick-breaking attention in one masked matrix form (the fast form).

Shapes as in :mod:`mixerlab.ops.stick_breaking.reference`. In log space
``log A_ij = logsigmoid(z_ij) + sum_{j<k<=i} logsigmoid(-z_ik)``; the sum over ``k`` is a reverse
cumulative sum along the keys of each query's row (keys after the query masked to zero), less the
term at ``j`` itself. Every exponent is ``<= 0``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def stick_breaking_parallel(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """Return ``o: [B, Tq, H, V]``; equal to :func:`~mixerlab.ops.stick_breaking.stick_breaking_reference`."""
    Tq, Tk, K = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    z = torch.einsum("bthk,bshk->bhts", q, k) * scale  # [B, H, Tq, Tk]
    future = torch.arange(Tk, device=q.device)[None, :] > torch.arange(Tk - Tq, Tk, device=q.device)[:, None]
    log_rest = F.logsigmoid(-z).masked_fill(future, 0.0)
    # sum_{k > j} along the row: flip, inclusive cumsum, flip back, minus the term at j
    after = log_rest.flip(-1).cumsum(-1).flip(-1) - log_rest
    log_a = (F.logsigmoid(z) + after).masked_fill(future, float("-inf"))
    return torch.einsum("bhts,bshv->bthv", log_a.exp(), v)
