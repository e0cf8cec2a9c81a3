"""SCRN as a plain loop over time (the specification).

"Learning Longer Memory in Recurrent Neural Networks" (Mikolov et al., arXiv:1412.7753, sec. 3)::

    s_t = (1 - alpha) B x_t + alpha s_{t-1}          slow context units, fixed alpha
    h_t = sigmoid(P s_t + A x_t + R h_{t-1})         fast hidden units

The input projections are taken precomputed: ``bx = B x``, ``ax = A x + b``.

Shapes: ``bx: [B, T, S]``, ``ax: [B, T, H]``, ``P: [H, S]``, ``R: [H, H]``; state ``s: [B, S]``,
``h: [B, H]``. Returns ``(s_seq [B, T, S], h_seq [B, T, H], (s, h))``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def scrn_reference(
    bx: Tensor,
    ax: Tensor,
    P: Tensor,
    R: Tensor,
    alpha: float,
    *,
    state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    if state is None:
        s, h = bx.new_zeros(bx.shape[0], bx.shape[-1]), ax.new_zeros(ax.shape[0], ax.shape[-1])
    else:
        s, h = state
    ss, hs = [], []
    for bx_t, ax_t in zip(bx.unbind(1), ax.unbind(1)):
        s = (1 - alpha) * bx_t + alpha * s
        h = torch.sigmoid(s @ P.T + ax_t + h @ R.T)
        ss.append(s)
        hs.append(h)
    if not hs:
        return bx.new_zeros(bx.shape), ax.new_zeros(ax.shape), (s, h)
    return torch.stack(ss, dim=1), torch.stack(hs, dim=1), (s, h)
