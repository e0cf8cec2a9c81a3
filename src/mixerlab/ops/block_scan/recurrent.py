"""One step of the block-diagonal linear recurrence ``h_t = A_t h_{t-1} + b_t`` (decoding).

Shapes: ``A: [B, G, K, K]``, ``b, h: [B, G, K]``; returns the new ``[B, G, K]``.
"""

from __future__ import annotations

from torch import Tensor


def block_scan_recurrent(A: Tensor, b: Tensor, h: Tensor) -> Tensor:
    return (A @ h.unsqueeze(-1)).squeeze(-1) + b
