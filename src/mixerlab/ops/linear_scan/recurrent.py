"""One step of the first-order linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (decoding).

Shapes: ``a, b: [B, *S]`` (one time step), ``h: [B, *S]``; returns the new ``[B, *S]``.
"""

from __future__ import annotations

from torch import Tensor


def linear_scan_recurrent(a: Tensor, b: Tensor, h: Tensor) -> Tensor:
    return a * h + b
