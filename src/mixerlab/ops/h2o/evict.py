"""The heavy-hitter cache policy of H2O (arXiv:2306.14048): keep the ``recent`` newest tokens and
the ``budget - recent`` older ones with the largest accumulated attention.

Shapes: ``k, v: [B, S, H, K]``, ``score: [B, S, H]`` (each head keeps its own tokens); returns them
cut to ``min(S, budget)`` tokens per head, in their original order.
"""

from __future__ import annotations

import torch
from torch import Tensor


def h2o_evict(
    k: Tensor, v: Tensor, score: Tensor, *, budget: int, recent: int
) -> tuple[Tensor, Tensor, Tensor]:
    S = k.shape[1]
    if budget >= S:
        return k, v, score
    older = S - recent
    heavy = score[:, :older].topk(budget - recent, dim=1).indices  # [B, budget - recent, H]
    tail = torch.arange(older, S, device=k.device)[None, :, None].expand(k.shape[0], recent, k.shape[2])
    index = torch.cat([heavy.sort(dim=1).values, tail], dim=1)  # [B, budget, H], in token order
    expand = index[..., None].expand(-1, -1, -1, k.shape[-1])
    return k.gather(1, expand), v.gather(1, expand), score.gather(1, index)
