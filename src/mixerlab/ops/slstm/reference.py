"""sLSTM (scalar memory, recurrent connections) as a plain loop over steps and heads: the spec.

"xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517), section 2.2, stabilised form (eqs. 15-17).

Shapes: ``wx: [B, T, H, 4, Dh]`` the input contributions (``W x_t + b``) to the gate
pre-activations in the order ``(i, f, z, o)``; ``R: [H, Dh, 4, Dh]`` block-diagonal recurrent
weights (head ``h``: ``pre[g, i] += sum_j R[h, j, g, i] h_{t-1}[j]``). State ``(c, n, m, h)``, each
``[B, H, Dh]``. Per head and step::

    i~, f~, z~, o~ = wx_t + R^T h_{t-1}
    m_t = max(logsigmoid(f~) + m_{t-1}, i~)            (exponential input gate, sigmoid forget gate)
    i' = exp(i~ - m_t)     f' = exp(logsigmoid(f~) + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z~)     n_t = f' n_{t-1} + i'     h_t = sigmoid(o~) c_t / n_t

The stored ``c, n`` are the paper's scaled by ``exp(-m_t)``; ``h`` is invariant to that scale.
An empty state is all zeros (``m_0 = 0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SLSTMState = tuple[Tensor, Tensor, Tensor, Tensor]


def slstm_reference(wx: Tensor, R: Tensor, *, state: SLSTMState | None = None) -> tuple[Tensor, SLSTMState]:
    B, T, H, _, Dh = wx.shape
    if state is None:
        state = tuple(wx.new_zeros(B, H, Dh) for _ in range(4))
    c, n, m, h = state
    heads_c, heads_n, heads_m, heads_h = [], [], [], []
    outs = []
    for head in range(H):
        c_h, n_h, m_h, h_h = c[:, head], n[:, head], m[:, head], h[:, head]
        ys = []
        for wx_t in wx[:, :, head].unbind(1):  # unbound: per-step indexing is O(T^2) under autograd
            pre = wx_t + torch.einsum("bj,jgi->bgi", h_h, R[head])  # [B, 4, Dh]
            i_t, f_t, z_t, o_t = pre.unbind(1)
            log_f = F.logsigmoid(f_t)
            m_new = torch.maximum(log_f + m_h, i_t)
            i_p = torch.exp(i_t - m_new)
            f_p = torch.exp(log_f + m_h - m_new)
            c_h = f_p * c_h + i_p * torch.tanh(z_t)
            n_h = f_p * n_h + i_p
            h_h = torch.sigmoid(o_t) * c_h / n_h
            m_h = m_new
            ys.append(h_h)
        outs.append(torch.stack(ys, dim=1) if ys else wx.new_zeros(B, 0, Dh))
        heads_c.append(c_h)
        heads_n.append(n_h)
        heads_m.append(m_h)
        heads_h.append(h_h)
    y = torch.stack(outs, dim=2)  # [B, T, H, Dh]
    new_state = tuple(torch.stack(s, dim=1) for s in (heads_c, heads_n, heads_m, heads_h))
    return y, new_state
