"""One decoding step of the selective scan (see :mod:`.reference` for the equations).

Shapes: ``x, dt: [B, 1, E]``; ``A: [E, N]``; ``B, C: [B, 1, N]``; ``state: [B, E, N]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.selective_scan.reference import transition


def selective_scan_recurrent(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    state: Tensor | None = None,
    negative_eigenvalues: bool = False,
) -> tuple[Tensor, Tensor]:
    x, dt, B, C = x[:, 0], dt[:, 0], B[:, 0], C[:, 0]
    a = transition(dt, A, negative_eigenvalues)  # [B, E, N]
    h = torch.einsum("be,bn->ben", dt * x, B)
    if state is not None:
        h = h + a * state
    return torch.einsum("ben,bn->be", h, C)[:, None], h
