"""One decoding step of the diagonal-plus-rank-one delta rule on a ``[B, H, K, V]`` state.

``S <- diag(exp(log_w)) S + b (a^T S) + k v^T`` and ``o = S^T (q * scale)``: the general form of
:func:`mixerlab.ops.rwkv7.rwkv7_chunk`. Shapes: ``q, log_w, k, a, b: [B, H, K]``, ``v: [B, H, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rwkv7_recurrent(
    q: Tensor,
    log_w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor,
    *,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, H, V], new state: [B, H, K, V])``."""
    read = torch.einsum("bhk,bhkv->bhv", a, state)  # a^T S, taken before the decay acts
    state = torch.exp(log_w)[..., None] * state
    state = state + torch.einsum("bhk,bhv->bhkv", b, read) + torch.einsum("bhk,bhv->bhkv", k, v)
    return torch.einsum("bhk,bhkv->bhv", q * scale, state), state
