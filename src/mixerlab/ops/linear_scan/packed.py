"""First-order linear recurrence over documents packed along time: ``linear_scan_packed``.

``h_t = a_t * h_{t-1} + b_t`` where the sequence holds documents back to back (flash-attention's
``cu_seqlens`` layout). At each document's first step ``a`` is set to 0, so the state restarts
there exactly (the chunk scan uses only products and sums, so ``a == 0`` is allowed), and the
document's initial state ``h0``, if given, enters at that step as ``a_t h0 + b_t``. Equal to
:func:`linear_scan_chunk` on each document alone, in one scan over the whole row.

Shapes: ``a, b: [1, T, *S]`` (``a`` broadcastable, e.g. a constant ``[*S]`` decay), ``lengths``:
the ``N`` document lengths summing to ``T``, ``h0: [N, *S]``. Returns every state ``[1, T, *S]``
and each document's last state ``[N, *S]``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from mixerlab.ops.linear_scan.scan import linear_scan_chunk


def linear_scan_packed(
    a: Tensor, b: Tensor, lengths: list[int], h0: Tensor | None = None, *, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    a, b = torch.broadcast_tensors(a, b)
    ends = list(itertools.accumulate(lengths))
    device = b.device
    doc = torch.repeat_interleave(
        torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device)
    )
    first = torch.zeros(b.shape[1], dtype=torch.bool, device=device)
    first[[0, *ends[:-1]]] = True
    first = first.reshape(1, -1, *([1] * (b.dim() - 2)))  # [1, T, 1, ...]
    if h0 is not None:  # each document's initial state, carried in by its first step's decay
        b = b + torch.where(first, a * h0[doc][None].to(b.dtype), torch.zeros((), dtype=b.dtype))
    a = a.masked_fill(first, 0)
    h, _ = linear_scan_chunk(a, b, chunk_size=chunk_size)
    return h, h[0, [end - 1 for end in ends]]
