"""RWKV-7 "Goose" state update as a plain loop over time steps (arXiv:2503.14456, the spec).

In the paper's orientation, with the state ``S_t in R^{V x K}`` and row vectors::

    S_t = S_{t-1} (diag(w_t) - kappa_t^T (a_t * kappa_t)) + v_t^T k_t,      y_t = S_t r_t

``w_t in (0, 1)^K`` is the per-channel decay, ``kappa_t`` the L2-normalised "removal key",
``a_t in (0, 1)^K`` the vector-valued in-context learning rate and ``k_t`` the (already
``a``-modulated) replacement key. Shapes: ``r, k, kappa, a: [B, T, H, K]``, ``log_w: [B, T, H, K]``
(``w = exp(log_w)``), ``v: [B, T, H, V]``; the state passed in and returned is ``[B, H, K, V]`` (the
transpose of the paper's ``S``, shared by every form of this op).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def rwkv7_reference(
    r: Tensor,
    log_w: Tensor,
    k: Tensor,
    v: Tensor,
    kappa: Tensor,
    a: Tensor,
    *,
    state: Tensor | None = None,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Returns ``(y: [B, T, H, V], final state: [B, H, K, V])``; ``r`` is multiplied by ``scale``."""
    B, T, H, K = r.shape
    V = v.shape[-1]
    S = r.new_zeros(B, H, V, K) if state is None else rearrange(state, "b h k v -> b h v k")
    outs = []
    for t in range(T):
        kap = kappa[:, t]
        transition = torch.diag_embed(torch.exp(log_w[:, t])) - torch.einsum(
            "bhi,bhj->bhij", kap, a[:, t] * kap
        )  # [B, H, K, K]
        S = S @ transition + torch.einsum("bhv,bhk->bhvk", v[:, t], k[:, t])
        outs.append(torch.einsum("bhvk,bhk->bhv", S, r[:, t] * scale))
    return torch.stack(outs, dim=1), rearrange(S, "b h v k -> b h k v")
