"""One decoding step of MemMamba's note pool (see :mod:`.reference` for the equations).

Shapes: ``q, notes_in: [B, 1, H, K]``; ``salient: [B, 1]`` (bool); ``pool: [B, P, H, K]``;
``filled: [B, P]``. Returns ``(o [B, 1, H, K], pool, filled)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def note_pool_recurrent(
    q: Tensor, notes_in: Tensor, salient: Tensor, pool: Tensor, filled: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    P = pool.shape[1]
    if P == 0:
        return torch.zeros_like(q), pool, filled
    write = salient[:, 0]  # [B]
    # a salient token shifts the pool one slot towards the oldest end and takes the newest slot
    shifted = torch.cat([pool[:, 1:], notes_in], dim=1)
    pool = torch.where(write[:, None, None, None], shifted, pool)
    shifted_filled = torch.cat([filled[:, 1:], torch.ones_like(filled[:, :1])], dim=1)
    filled = torch.where(write[:, None], shifted_filled, filled)
    scores = torch.einsum("bhk,bphk->bhp", q[:, 0], pool) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~(filled > 0)[:, None, :], float("-inf"))
    top = scores.detach().amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    expo = torch.exp(scores - top)
    weights = expo / expo.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(expo.dtype).tiny)
    return torch.einsum("bhp,bphk->bhk", weights, pool)[:, None], pool, filled
