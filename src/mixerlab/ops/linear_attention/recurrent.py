"""One decoding step of gated linear attention.

Shapes: ``q, k: [B, H, K]``, ``v: [B, H, V]``, ``log_decay``: ``None``, ``[B, H]`` or ``[B, H, K]``;
``state: [B, H, K, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_attention_recurrent(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, H, V], new_state: [B, H, K, V])``."""
    if log_decay is not None:
        decay = torch.exp(log_decay)
        decay = decay[..., None, None] if decay.dim() == 2 else decay[..., None]
        state = decay * state
    state = state + k[..., :, None] * v[..., None, :]
    o = (q[..., None, :] @ state).squeeze(-2)
    return o, state
