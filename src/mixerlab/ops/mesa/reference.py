"""The Mesa layer as a plain loop over time steps (the specification).

"MesaNet: Sequence Modeling by Locally Optimal Test-Time Training" (arXiv:2506.05233), section 3:
per head, with a forget gate ``gamma_t = exp(log_decay_t)``, an input gate ``beta_t`` and the
regulariser ``Lambda = diag(lam)``::

    H^kk_t = gamma_t H^kk_{t-1} + beta_t k_t^T k_t                 ([K, K])
    H^kv_t = gamma_t H^kv_{t-1} + beta_t k_t^T v_t                 ([K, V])
    o_t    = ((H^kk_t + Lambda)^-1 q_t^T)^T H^kv_t

i.e. ``o_t = W_t q_t`` for the ``W_t`` minimising ``sum_{s<=t} (decayed beta_s) |v_s - W k_s|^2 +
|W Lambda^(1/2)|^2``. Here the system is solved exactly (``torch.linalg.solve``) at every step.

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_decay, beta: [B, T, H]``, ``lam: [H, K]``
(positive); state ``(H^kk: [B, H, K, K], H^kv: [B, H, K, V])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.precision import widen


def mesa_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    beta: Tensor,
    lam: Tensor,
    *,
    initial_state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Return ``(o: [B, T, H, V], (H^kk, H^kv))``, the statistics after the last step."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype = v.dtype
    q, k, v, log_decay, beta, lam = widen(q, k, v, log_decay, beta, lam)  # no half-precision solve
    if initial_state is None:
        h_kk, h_kv = q.new_zeros(B, H, K, K), q.new_zeros(B, H, K, V)
    else:
        h_kk, h_kv = widen(*initial_state)
    regulariser = torch.diag_embed(lam)  # [H, K, K]
    outs = []
    for t in range(T):
        gamma = torch.exp(log_decay[:, t])[..., None, None]
        bk = beta[:, t, :, None] * k[:, t]
        h_kk = gamma * h_kk + torch.einsum("bhi,bhj->bhij", bk, k[:, t])
        h_kv = gamma * h_kv + torch.einsum("bhk,bhv->bhkv", bk, v[:, t])
        x = torch.linalg.solve(h_kk + regulariser, q[:, t])  # [B, H, K]
        outs.append(torch.einsum("bhk,bhkv->bhv", x, h_kv))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o.to(out_dtype), (h_kk, h_kv)
