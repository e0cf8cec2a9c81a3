"""One decoding step of the (gated) delta rule on a ``[B, H, K, V]`` state.

Shapes: ``q, k: [B, H, K]``, ``v: [B, H, V]``, ``beta, g: [B, H]``, ``state: [B, H, K, V]``.
Written as "read the value stored under ``k``, then write the correction", which is the
delta-rule update ``S <- alpha (I - beta k k^T) S + beta k v^T`` in this layout.
"""

from __future__ import annotations

import torch
from torch import Tensor


def delta_rule_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor | None,
    state: Tensor,
    *,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, H, V], new state: [B, H, K, V])``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if g is not None:
        state = state * torch.exp(g)[..., None, None]
    stored = torch.einsum("bhk,bhkv->bhv", k, state)
    state = state + torch.einsum("bhk,bhv->bhkv", k, beta[..., None] * (v - stored))
    return torch.einsum("bhk,bhkv->bhv", q * scale, state), state
