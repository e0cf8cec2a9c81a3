"""Mamba-2's selective state space model as a plain loop over time steps (the specification).

"Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State Space
Duality" (arXiv:2405.21060), the SSM with a scalar-times-identity transition per head::

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,        y_t = h_t C_t

Shapes: ``x: [B, T, H, P]``, ``dt: [B, T, H]`` (already positive), ``A: [H]`` (negative),
``B_, C_: [B, T, N]`` (one group shared by all heads), state ``h: [B, H, P, N]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ssd_reference(
    x: Tensor, dt: Tensor, A: Tensor, B_: Tensor, C_: Tensor, *, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Returns ``(y: [B, T, H, P], final state: [B, H, P, N])``."""
    Bsz, T, H, P = x.shape
    N = B_.shape[-1]
    h = x.new_zeros(Bsz, H, P, N) if state is None else state
    ys = []
    for t in range(T):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # [B, H, 1, 1]
        inp = (dt[:, t, :, None] * x[:, t])[..., None] * B_[:, t, None, None, :]  # [B, H, P, N]
        h = decay * h + inp
        ys.append((h * C_[:, t, None, None, :]).sum(-1))
    return torch.stack(ys, dim=1), h
