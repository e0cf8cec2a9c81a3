"""(Gated) DeltaProduct as a plain loop over tokens and their Householder steps (arXiv:2502.10297).

Per token, the state ``S in R^{V x K}`` is decayed once by the gate ``alpha_t = exp(g_t)`` and
then takes ``n_h`` delta-rule steps with their own keys, values and learning rates::

    S_{t,0} = alpha_t S_{t-1}
    S_{t,j} = S_{t,j-1} (I - beta_{t,j} k_{t,j} k_{t,j}^T) + beta_{t,j} v_{t,j} k_{t,j}^T,   j = 1..n_h
    S_t     = S_{t,n_h},      o_t = S_t q_t

so the transition is ``alpha_t`` times a product of ``n_h`` generalised Householder matrices.
Shapes: ``q: [B, T, H, K]``, ``k: [B, T, n_h, H, K]``, ``v: [B, T, n_h, H, V]``,
``beta: [B, T, n_h, H]``, ``g: [B, T, H]`` or None (ungated); the state passed in and returned is
``[B, H, K, V]`` (the transpose of the paper's ``S``, shared with ``ops.delta_rule``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def deltaproduct_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor | None = None,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``; ``q`` is multiplied by ``scale``."""
    B, T, H, K = q.shape
    n_h, V = k.shape[2], v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    S = q.new_zeros(B, H, V, K) if state is None else rearrange(state, "b h k v -> b h v k")
    eye = torch.eye(K, dtype=q.dtype, device=q.device)
    outs = []
    for t in range(T):
        if g is not None:
            S = torch.exp(g[:, t, :, None, None]) * S
        for j in range(n_h):
            kj, vj, bj = k[:, t, j], v[:, t, j], beta[:, t, j, :, None, None]
            S = S @ (eye - bj * torch.einsum("bhi,bhj->bhij", kj, kj)) + bj * torch.einsum(
                "bhv,bhk->bhvk", vj, kj
            )
        outs.append(torch.einsum("bhvk,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(outs, dim=1), rearrange(S, "b h v k -> b h k v")
