"""Aaren's attention as a plain RNN, one token per step (the specification).

Shapes: ``s: [B, T, H]`` (scores of the head's query against each key); ``v: [B, T, H, V]``; the
state ``m, u: [B, H]``, ``w: [B, H, V]`` (``m`` starts at the dtype's lowest finite value, ``u``
and ``w`` at zero). Returns ``o: [B, T, H, V]`` and the final ``(m, u, w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def aaren_reference(
    s: Tensor, v: Tensor, m: Tensor, u: Tensor, w: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    outs = []
    for t in range(s.shape[1]):
        m_new = torch.maximum(m, s[:, t])
        old = torch.exp(m - m_new)  # rescales the running sums to the new maximum
        new = torch.exp(s[:, t] - m_new)
        u = u * old + new
        w = w * old[..., None] + new[..., None] * v[:, t]
        m = m_new
        outs.append(w / u[..., None])
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)
    return o, (m, u, w)
