"""sLSTM one step and the vectorised step loop (the fast form).

Conventions as in :mod:`mixerlab.ops.slstm.reference`. The recurrent connections make each step
depend non-linearly on the previous output, so the sLSTM has no parallel form; the paper trains it
sequentially too (its CUDA kernel fuses this same loop). The fast form therefore takes the input
contributions for all ``T`` at once and runs one batched matmul over all heads per step.

Shapes: ``wx_t: [B, H, 4, Dh]``; ``R: [H, Dh, 4, Dh]``; state ``(c, n, m, h)`` each ``[B, H, Dh]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.slstm.reference import SLSTMState


def _step(wx_t: Tensor, R_flat: Tensor, state: SLSTMState) -> SLSTMState:
    c, n, m, h = state
    # [H, B, Dh] @ [H, Dh, 4 Dh] -> [H, B, 4 Dh]: one matmul for every head and gate.
    rec = torch.bmm(rearrange(h, "b h d -> h b d"), R_flat)
    pre = wx_t + rearrange(rec, "h b (g d) -> b h g d", g=4)
    i_t, f_t, z_t, o_t = pre.unbind(2)
    log_f = F.logsigmoid(f_t)
    m_new = torch.maximum(log_f + m, i_t)
    i_p = torch.exp(i_t - m_new)
    f_p = torch.exp(log_f + m - m_new)
    c = f_p * c + i_p * torch.tanh(z_t)
    n = f_p * n + i_p
    h = torch.sigmoid(o_t) * c / n
    return c, n, m_new, h


def slstm_recurrent(wx_t: Tensor, R: Tensor, state: SLSTMState) -> tuple[Tensor, SLSTMState]:
    """One decoding step: ``wx_t: [B, H, 4, Dh]`` -> ``(h [B, H, Dh], state)``."""
    state = _step(wx_t, rearrange(R, "h j g i -> h j (g i)"), state)
    return state[3], state


def slstm_sequential(wx: Tensor, R: Tensor, *, state: SLSTMState | None = None) -> tuple[Tensor, SLSTMState]:
    """All steps: ``wx: [B, T, H, 4, Dh]`` -> ``(h [B, T, H, Dh], state)``."""
    B, T, H, _, Dh = wx.shape
    if state is None:
        state = tuple(wx.new_zeros(B, H, Dh) for _ in range(4))
    R_flat = rearrange(R, "h j g i -> h j (g i)")
    ys = []
    # unbind once: indexing wx[:, t] under autograd would zero-fill a full-size gradient per step.
    for wx_t in wx.unbind(1):
        state = _step(wx_t, R_flat, state)
        ys.append(state[3])
    y = torch.stack(ys, dim=1) if ys else wx.new_zeros(B, 0, H, Dh)
    return y, state
