"""One decoding step of Mamba-2's SSM (arXiv:2405.21060) on a ``[B, H, P, N]`` state.

Shapes: ``x: [B, H, P]``, ``dt: [B, H]``, ``A: [H]``, ``B_, C_: [B, N]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ssd_recurrent(
    x: Tensor, dt: Tensor, A: Tensor, B_: Tensor, C_: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """Returns ``(y: [B, H, P], new state: [B, H, P, N])``."""
    state = torch.exp(dt * A)[..., None, None] * state + torch.einsum("bhp,bn->bhpn", dt[..., None] * x, B_)
    return torch.einsum("bhpn,bn->bhp", state, C_), state
