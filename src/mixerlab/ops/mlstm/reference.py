"""mLSTM (matrix memory) as a plain loop over time steps: the specification.

"xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517), section 2.3, in its stabilised form.

Shapes: ``q, k: [B, T, H, K]``; ``v: [B, T, H, V]``; ``log_i, log_f: [B, T, H]`` (log input gate
= the raw input pre-activation, since ``i = exp(i~)``; log forget gate, e.g. ``logsigmoid(f~)``).
State ``(C [B, H, K, V], n [B, H, K], m [B, H])``.

Stabiliser convention (shared by every mLSTM function here). The true memory ``C~, n~`` obeys::

    C~_t = f_t C~_{t-1} + i_t k_t v_t^T        n~_t = f_t n~_{t-1} + i_t k_t
    h_t  = C~_t^T q_t / max(|n~_t . q_t|, 1)   (q_t scaled by 1/sqrt(K))

The stored state is ``C = exp(-m) C~`` and ``n = exp(-m) n~`` with
``m_t = max(log f_t + m_{t-1}, log i_t)`` and ``m_0 = 0`` for an empty state, so that
``h_t = C_t^T q_t / (max(|n_t . q_t|, exp(-m_t)) + eps)``. The ``eps`` (1e-6) is the authors'
(mlstm_kernels); the ``exp(-m)`` lower bound is the paper's ``max(., 1)`` written for the scaled
state.
"""

from __future__ import annotations

import torch
from torch import Tensor

MLSTMState = tuple[Tensor, Tensor, Tensor]


def mlstm_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_i: Tensor,
    log_f: Tensor,
    *,
    state: MLSTMState | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, MLSTMState]:
    B, T, H, K = q.shape
    V = v.shape[-1]
    if state is None:
        C = q.new_zeros(B, H, K, V)
        n = q.new_zeros(B, H, K)
        m = q.new_zeros(B, H)
    else:
        C, n, m = state
    scale = K**-0.5
    outs = []
    # Iterate over unbound steps: indexing x[:, t] under autograd costs a full-size zero gradient.
    for qt, kt, vt, li, lf in zip(*(t.unbind(1) for t in (q, k, v, log_i, log_f))):
        m_new = torch.maximum(lf + m, li)  # [B, H]
        f_bar = torch.exp(lf + m - m_new)
        i_bar = torch.exp(li - m_new)
        qt = qt * scale
        C = f_bar[..., None, None] * C + i_bar[..., None, None] * (kt[..., :, None] * vt[..., None, :])
        n = f_bar[..., None] * n + i_bar[..., None] * kt
        num = torch.einsum("bhkv,bhk->bhv", C, qt)
        qn = (n * qt).sum(-1)
        den = torch.maximum(qn.abs(), torch.exp(-m_new)) + eps
        outs.append(num / den[..., None])
        m = m_new
    h = torch.stack(outs, dim=1) if outs else v[:, :0].clone()
    return h, (C, n, m)
