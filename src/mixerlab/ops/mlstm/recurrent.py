"""One mLSTM decoding step (stabilised), conventions as in :mod:`mixerlab.ops.mlstm.reference`.

Shapes: ``q, k: [B, H, K]``; ``v: [B, H, V]``; ``log_i, log_f: [B, H]``; state
``(C [B, H, K, V], n [B, H, K], m [B, H])``. Returns ``(h [B, H, V], state)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.mlstm.reference import MLSTMState


def mlstm_recurrent(
    q: Tensor, k: Tensor, v: Tensor, log_i: Tensor, log_f: Tensor, state: MLSTMState, *, eps: float = 1e-6
) -> tuple[Tensor, MLSTMState]:
    C, n, m = state
    m_new = torch.maximum(log_f + m, log_i)
    f_bar = torch.exp(log_f + m - m_new)[..., None]
    i_bar = torch.exp(log_i - m_new)[..., None]
    q = q * q.shape[-1] ** -0.5
    C = f_bar[..., None] * C + torch.einsum("bhk,bhv->bhkv", i_bar * k, v)
    n = f_bar * n + i_bar * k
    den = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m_new)) + eps
    h = torch.einsum("bhkv,bhk->bhv", C, q) / den[..., None]
    return h, (C, n, m_new)
