"""First-order linear recurrence as a plain loop over time (the specification).

``h_t = a_t * h_{t-1} + b_t`` elementwise, with ``h_{-1} = h0`` (zeros if not given). ``a`` and
``b`` may be real or complex; any sign, zeros included.

Shapes: ``a, b: [B, T, *S]`` (broadcastable to one shape; ``*S`` is any state layout, e.g.
``[D]`` or ``[H, N]``), ``h0: [B, *S]``. Returns every state ``[B, T, *S]`` and the last ``[B, *S]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_scan_reference(a: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    a, b = torch.broadcast_tensors(a, b)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    states = []
    # unbind, not a[:, t]: indexing a tensor inside the loop makes autograd's backward O(T^2).
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t
        states.append(h)
    if not states:
        return b.new_zeros(b.shape), h
    return torch.stack(states, dim=1), h
