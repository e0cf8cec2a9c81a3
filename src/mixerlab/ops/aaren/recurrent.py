"""One step of Aaren's RNN: fold token ``t`` into the running ``(m, u, w)``.

Shapes: ``s: [B, H]``; ``v: [B, H, V]``; ``m, u: [B, H]``; ``w: [B, H, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def aaren_recurrent(
    s: Tensor, v: Tensor, m: Tensor, u: Tensor, w: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    m_new = torch.maximum(m, s)
    old, new = torch.exp(m - m_new), torch.exp(s - m_new)
    u = u * old + new
    w = w * old[..., None] + new[..., None] * v
    return w / u[..., None], (m_new, u, w)
