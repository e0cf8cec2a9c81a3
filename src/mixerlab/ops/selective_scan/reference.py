"""The selective state-space scan (S6) as a plain loop over time (the specification).

"Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (arXiv:2312.00752), Algorithm 2,
with the simplified zero-order hold of the authors' code: per channel ``e`` and state ``n``::

    a_t[e, n] = exp(dt_t[e] * A[e, n])            # in (0, 1) because A < 0, dt > 0
    h_t[e, n] = a_t[e, n] * h_{t-1}[e, n] + dt_t[e] * B_t[n] * x_t[e]
    y_t[e]    = sum_n C_t[n] * h_t[e, n]

With ``negative_eigenvalues`` the transition is ``2 a_t - 1`` in (-1, 1), the mapping used for
Mamba in "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues" (arXiv:2411.12537).
The ``D x`` skip and the output gate belong to the layer, not to this op.

Shapes: ``x, dt: [B, T, E]``; ``A: [E, N]``; ``B, C: [B, T, N]``; ``state: [B, E, N]``.
Returns ``(y [B, T, E], state [B, E, N])``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def transition(dt: Tensor, A: Tensor, negative_eigenvalues: bool) -> Tensor:
    """``[..., E, N]`` per-step transition from ``dt: [..., E]`` and ``A: [E, N]``."""
    a = torch.exp(dt[..., None] * A)
    return 2 * a - 1 if negative_eigenvalues else a


def selective_scan_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    state: Tensor | None = None,
    negative_eigenvalues: bool = False,
) -> tuple[Tensor, Tensor]:
    batch, T, E = x.shape
    h = x.new_zeros(batch, E, A.shape[1]) if state is None else state
    ys = []
    for t in range(T):
        a = transition(dt[:, t], A, negative_eigenvalues)  # [B, E, N]
        h = a * h + (dt[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(torch.einsum("ben,bn->be", h, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x[:, :0].clone()
    return y, h
