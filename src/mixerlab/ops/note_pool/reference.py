"""MemMamba's note pool as a plain loop over time (the specification).

"MemMamba: Rethinking Memory Patterns in State Space Model" (arXiv:2510.03279): a token whose
saliency passes a threshold is summarised into a note and written to a bounded note pool; every
token then reads the pool by cross-token attention. The deterministic form used here, per
sequence and step ``t``::

    if salient_t:  pool <- (pool + [n_t])[-P:]          # first in, first out; the oldest note leaves
    a_t[j]   = softmax_j(q_t . pool[j] / sqrt(K))        # over the notes held, per head
    o_t      = sum_j a_t[j] pool[j]                      # the note is both key and value
    o_t      = 0 if the pool is empty

The pool is a list of at most ``P`` notes in arrival order. It is carried as ``notes: [B, P, H, K]``
with ``filled: [B, P]`` (1 where a slot holds a note), its newest note in the last slot and its
empty slots first.

Shapes: ``q, notes_in: [B, T, H, K]``; ``salient: [B, T]`` (bool); ``pool: [B, P, H, K]``;
``filled: [B, P]``. Returns ``(o [B, T, H, K], pool [B, P, H, K], filled [B, P])``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def note_pool_reference(
    q: Tensor, notes_in: Tensor, salient: Tensor, pool: Tensor, filled: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    batch, T, H, K = q.shape
    P = pool.shape[1]
    outs = []
    final_pools, final_filled = [], []
    for b in range(batch):
        # the pool of one sequence as a Python list of [H, K] notes, oldest first
        held = [pool[b, j] for j in range(P) if filled[b, j] > 0]
        rows = []
        for t in range(T):
            if P > 0 and bool(salient[b, t]):
                held = [*held, notes_in[b, t]][-P:]
            if not held:
                rows.append(q.new_zeros(H, K))
                continue
            keys = torch.stack(held)  # [S, H, K]
            scores = torch.einsum("hk,shk->hs", q[b, t], keys) / math.sqrt(K)
            weights = torch.softmax(scores, dim=-1)
            rows.append(torch.einsum("hs,shk->hk", weights, keys))
        outs.append(torch.stack(rows) if rows else q.new_zeros(0, H, K))
        empty = P - len(held)
        final_pools.append(
            torch.stack([*(pool.new_zeros(H, K) for _ in range(empty)), *held]) if P else pool[b]
        )
        final_filled.append(torch.cat([filled.new_zeros(empty), filled.new_ones(len(held))]))
    return torch.stack(outs), torch.stack(final_pools), torch.stack(final_filled)
