"""The (gated) delta rule as a plain loop over time steps, in the papers' orientation (the spec).

DeltaNet, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"
(arXiv:2406.06484), eq. for the state ``S_t in R^{V x K}``::

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,        o_t = S_t q_t

Gated DeltaNet, "Gated Delta Networks" (arXiv:2412.06464), multiplies the old state by a decay
``alpha_t = exp(g_t)`` (``g_t <= 0``)::

    S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``beta, g: [B, T, H]``. The state passed in
and returned is ``[B, H, K, V]`` (the transpose of the papers' ``S``), the layout every form of this
op shares; this loop transposes it to the papers' ``[V, K]`` and back.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def delta_rule_reference(
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
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    S = q.new_zeros(B, H, V, K) if state is None else rearrange(state, "b h k v -> b h v k")
    eye = torch.eye(K, dtype=q.dtype, device=q.device)
    outs = []
    for t in range(T):
        kt, vt, bt = k[:, t], v[:, t], beta[:, t, :, None, None]  # [B,H,K], [B,H,V], [B,H,1,1]
        transition = eye - bt * torch.einsum("bhi,bhj->bhij", kt, kt)  # [B, H, K, K]
        S = S @ transition
        if g is not None:
            S = torch.exp(g[:, t, :, None, None]) * S
        S = S + bt * torch.einsum("bhv,bhk->bhvk", vt, kt)
        outs.append(torch.einsum("bhvk,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(outs, dim=1), rearrange(S, "b h v k -> b h k v")
