"""SCRN, fast form: the slow units by a linear scan, the fast units by a loop on precomputed inputs.

The context units follow ``s_t = alpha s_{t-1} + (1 - alpha) B x_t``, a first-order linear
recurrence with a constant decay, so they run through :func:`mixerlab.ops.linear_scan.linear_scan_chunk`.
Their contribution ``P s_t`` to the fast units is then one matmul over all steps. The fast units
``h_t = sigmoid(P s_t + A x_t + R h_{t-1})`` are nonlinear in ``h_{t-1}`` and inherently
sequential (the paper defines no parallel form): the loop left keeps only ``R h_{t-1}``.

Shapes and returns as in :mod:`mixerlab.ops.scrn.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.linear_scan import linear_scan_chunk


def scrn_scan(
    bx: Tensor,
    ax: Tensor,
    P: Tensor,
    R: Tensor,
    alpha: float,
    *,
    state: tuple[Tensor, Tensor] | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    s0, h = (None, ax.new_zeros(ax.shape[0], ax.shape[-1])) if state is None else state
    decay = bx.new_full((1, 1, bx.shape[-1]), alpha)  # constant in time
    s_seq, s_last = linear_scan_chunk(decay, (1 - alpha) * bx, s0, chunk_size=chunk_size)
    pre = ax + s_seq @ P.T  # [B, T, H]
    hs = []
    for pre_t in pre.unbind(1):
        h = torch.sigmoid(torch.addmm(pre_t, h, R.T))
        hs.append(h)
    h_seq = torch.stack(hs, dim=1) if hs else ax.new_zeros(ax.shape)
    return s_seq, h_seq, (s_last, h)
