"""Mamba-3's state update as a plain loop over time steps (the specification).

"Mamba-3: Improved Sequence Modeling using State Space Principles" (arXiv:2603.15569), the SISO
SSM with the exponential-trapezoidal rule (sec. 3) and the complex-valued state written as
rotations of pairs of real state channels (sec. 4), per head ``h``::

    alpha_t = exp(dt_t A),   beta_t = (1 - lam_t) dt_t alpha_t,   gamma_t = lam_t dt_t
    h_t = alpha_t R_t h_{t-1} + beta_t R_t (x_{t-1} B_{t-1}^T) + gamma_t x_t B_t^T
    y_t = h_t C_t

``R_t`` rotates each state pair ``(n, n + N/2)`` by the angle ``dt_t theta_t[n]`` (a
data-dependent rotation: the real form of a complex diagonal transition). ``lam_t = 1`` is
Mamba-2's exponential-Euler rule with no rotation when ``theta = 0``; ``lam_t = 1/2`` is the
classical trapezoid. The first step's previous input ``(x_{-1}, B_{-1})`` is carried in the state.

Shapes: ``x: [B, T, H, P]``, ``dt, lam: [B, T, H]``, ``A: [H]`` (negative), ``theta: [B, T, N/2]``,
``B_, C_: [B, T, N]``; state ``(h [B, H, P, N], prev_x [B, H, P], prev_b [B, N])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

Mamba3State = tuple[Tensor, Tensor, Tensor]


def rotate(v: Tensor, angle: Tensor) -> Tensor:
    """Rotate the pairs ``(v[n], v[n + N/2])`` of ``v: [..., N]`` by ``angle: [..., N/2]``."""
    v1, v2 = v.chunk(2, dim=-1)
    cos, sin = angle.cos(), angle.sin()
    return torch.cat([v1 * cos - v2 * sin, v1 * sin + v2 * cos], dim=-1)


def mamba3_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    lam: Tensor,
    theta: Tensor,
    B_: Tensor,
    C_: Tensor,
    *,
    state: Mamba3State,
) -> tuple[Tensor, Mamba3State]:
    """Returns ``(y: [B, T, H, P], new state)``."""
    h, prev_x, prev_b = state
    ys = []
    for x_t, dt_t, lam_t, theta_t, b_t, c_t in zip(*(t.unbind(1) for t in (x, dt, lam, theta, B_, C_))):
        alpha = torch.exp(dt_t * A)  # [B, H]
        beta, gamma = (1 - lam_t) * dt_t * alpha, lam_t * dt_t
        angle = dt_t[..., None, None] * theta_t[:, None, None, :]  # [B, H, 1, N/2]
        prev_in = prev_x[..., None] * prev_b[:, None, None, :]  # x_{t-1} B_{t-1}^T: [B, H, P, N]
        h = (
            alpha[..., None, None] * rotate(h, angle)
            + beta[..., None, None] * rotate(prev_in, angle)
            + gamma[..., None, None] * x_t[..., None] * b_t[:, None, None, :]
        )
        ys.append((h * c_t[:, None, None, :]).sum(-1))
        prev_x, prev_b = x_t, b_t
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return y, (h, prev_x, prev_b)
