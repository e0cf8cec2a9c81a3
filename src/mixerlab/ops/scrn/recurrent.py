"""One SCRN decoding step (equations in :mod:`mixerlab.ops.scrn.reference`).

Shapes: ``bx: [B, S]``, ``ax: [B, H]``, state ``s: [B, S]``, ``h: [B, H]``; returns the new ``(s, h)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def scrn_recurrent(
    bx: Tensor, ax: Tensor, P: Tensor, R: Tensor, alpha: float, state: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    s, h = state
    s = (1 - alpha) * bx + alpha * s
    return s, torch.sigmoid(s @ P.T + ax + h @ R.T)
