"""The ParaGRU cell (one step) and its diagonal Jacobian.

"ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for Large Language Models"
(arXiv:2510.21450): a GRU whose recurrent matrices are diagonal, so that the Jacobian of one step
with respect to the previous state is diagonal too.

Shapes: ``h_prev: [..., N]``; ``pre: [..., 3, N]`` the input contributions ``W x_t + b`` to the
update, reset and candidate pre-activations (in that order); ``A: [3, N]`` the diagonal recurrent
weights. The cell::

    z = sigmoid(pre_z + A_z h)     r = sigmoid(pre_r + A_r h)     c = tanh(pre_c + A_c (r h))
    h_new = (1 - z) h + z c
"""

from __future__ import annotations

import torch
from torch import Tensor


def paragru_recurrent(h_prev: Tensor, pre: Tensor, A: Tensor) -> Tensor:
    """One step ``h_t = f(h_{t-1}, x_t)``, broadcasting over leading dims."""
    z = torch.sigmoid(pre[..., 0, :] + A[0] * h_prev)
    r = torch.sigmoid(pre[..., 1, :] + A[1] * h_prev)
    c = torch.tanh(pre[..., 2, :] + A[2] * (r * h_prev))
    return h_prev + z * (c - h_prev)


def paragru_recurrent_jacobian(h_prev: Tensor, pre: Tensor, A: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(h_prev, x), diag(df/dh_prev))``, both shaped like ``h_prev``."""
    z = torch.sigmoid(pre[..., 0, :] + A[0] * h_prev)
    r = torch.sigmoid(pre[..., 1, :] + A[1] * h_prev)
    c = torch.tanh(pre[..., 2, :] + A[2] * (r * h_prev))
    h = h_prev + z * (c - h_prev)
    dz = z * (1 - z) * A[0]
    dr = r * (1 - r) * A[1]
    dc = (1 - c * c) * A[2] * (r + h_prev * dr)
    return h, (1 - z) + (c - h_prev) * dz + z * dc
