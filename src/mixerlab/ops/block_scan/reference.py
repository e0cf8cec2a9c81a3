"""Block-diagonal (matrix-valued) linear recurrence as a plain loop over time (the specification).

``h_t = A_t h_{t-1} + b_t`` where ``A_t`` is block-diagonal: each of the ``G`` blocks is a dense
``K x K`` matrix acting on its own ``K`` state entries. ``h_{-1} = h0`` (zeros if not given).

Shapes: ``A: [B, T, G, K, K]`` (row index first: ``(A h)_i = sum_j A_ij h_j``), ``b: [B, T, G, K]``,
``h0: [B, G, K]``. Returns every state ``[B, T, G, K]`` and the last ``[B, G, K]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def block_scan_reference(A: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    states = []
    # unbind, not A[:, t]: indexing a tensor inside the loop makes autograd's backward O(T^2).
    for A_t, b_t in zip(A.unbind(1), b.unbind(1)):
        h = torch.einsum("bgij,bgj->bgi", A_t, h) + b_t
        states.append(h)
    if not states:
        return b.new_zeros(b.shape), h
    return torch.stack(states, dim=1), h
