"""HyperLSTM, the fast form: the same loop with every input-side product hoisted out of it.

The HyperLSTM has no parallel form (both LSTMs are nonlinear in their own past and the main one's
weights change with the hyper LSTM's output, so the paper runs it step by step). What does not
depend on the past is computed for all steps at once before the loop: the hyper LSTM's
``x``-part of its input projection, the main LSTM's ``W_x x_t``, and the bias. The loop keeps
the recurrent products. Equations, shapes and returns as in :mod:`.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.hyperlstm.reference import HyperLSTMWeights, _lstm_update


def hyperlstm_loop(
    x: Tensor, w: HyperLSTMWeights, state: tuple[Tensor, Tensor, Tensor, Tensor]
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    h, c, hh, hc = state
    H, n_z = h.shape[-1], w.d_h.shape[1]
    hyper_from_h, hyper_from_x = w.hyper_ih.split([H, x.shape[-1]], dim=1)
    hyper_x = torch.nn.functional.linear(x, hyper_from_x, w.hyper_bias)  # [B, T, 4N]
    main_x = x @ w.weight_ih.T  # [B, T, 4H]
    hyper_rec = torch.cat([hyper_from_h, w.hyper_hh], dim=1).T  # [H + N, 4N]
    d_all = torch.cat([w.d_h, w.d_x, w.d_b], dim=0).T  # [N_z, 12H] stacked per z
    hs = []
    for hx_t, mx_t in zip(hyper_x.unbind(1), main_x.unbind(1)):
        hh, hc = _lstm_update(torch.addmm(hx_t, torch.cat([h, hh], dim=-1), hyper_rec), hc)
        z = torch.addmm(torch.nn.functional.pad(w.z_bias, (0, n_z)), hh, w.z_weight.T)
        z_h, z_x, z_b = z.split(n_z, dim=-1)
        d_h = z_h @ d_all[:, : 4 * H]
        d_x = z_x @ d_all[:, 4 * H : 8 * H]
        gates = torch.addmm(w.bias, z_b, d_all[:, 8 * H :]) + d_h * (h @ w.weight_hh.T) + d_x * mx_t
        h, c = _lstm_update(gates, c)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else x.new_zeros(x.shape[0], 0, H)
    return out, (h, c, hh, hc)
