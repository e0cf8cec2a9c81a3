"""HyperLSTM as a plain loop over time (the specification).

"HyperNetworks" (Ha, Dai & Le, arXiv:1609.09106, sec. 3.2): a small LSTM (the hypernetwork,
hidden width ``N``) reads the main LSTM's input and previous output and emits embeddings ``z``
that scale, row by row, the main LSTM's weight matrices at every step::

    x^_t = [h_{t-1}; x_t]
    h^_t, c^_t = LSTM^(x^_t, h^_{t-1}, c^_{t-1})
    z_h = W_zh h^_t + b_zh,  z_x = W_zx h^_t + b_zx,  z_b = W_zb h^_t          (each [N_z])
    for each gate y in (i, f, g, o):
        y_t = d_h^y(z_h) * (W_h^y h_{t-1}) + d_x^y(z_x) * (W_x^y x_t) + b^y(z_b)
        with d_h^y(z_h) = W_hz^y z_h,  d_x^y(z_x) = W_xz^y z_x,  b^y(z_b) = W_bz^y z_b + b_0^y
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),   h_t = sigmoid(o) tanh(c_t)

(the memory-efficient weight scaling of eq. 10: ``d * (W h)`` rather than ``(d o W) h``).
Shapes: ``x: [B, T, D]``; state ``(h, c, h^, c^)``: ``[B, H]``, ``[B, H]``, ``[B, N]``, ``[B, N]``.
Returns ``(h_seq [B, T, H], new state)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class HyperLSTMWeights(NamedTuple):
    """The weights of one HyperLSTM cell (gate order ``i, f, g, o`` as in ``torch.nn.LSTM``)."""

    hyper_ih: Tensor  # [4N, H + D]: the hyper LSTM's input [h_{t-1}; x_t]
    hyper_hh: Tensor  # [4N, N]
    hyper_bias: Tensor  # [4N]
    z_weight: Tensor  # [3 N_z, N]: z_h, z_x, z_b from h^_t
    z_bias: Tensor  # [2 N_z]: biases of z_h, z_x (z_b has none)
    d_h: Tensor  # [4H, N_z]
    d_x: Tensor  # [4H, N_z]
    d_b: Tensor  # [4H, N_z]
    weight_hh: Tensor  # [4H, H]
    weight_ih: Tensor  # [4H, D]
    bias: Tensor  # [4H]


def _lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def hyperlstm_reference(
    x: Tensor, w: HyperLSTMWeights, state: tuple[Tensor, Tensor, Tensor, Tensor]
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    h, c, hh, hc = state
    n_z = w.d_h.shape[1]
    hs = []
    for x_t in x.unbind(1):
        hyper_gates = F.linear(torch.cat([h, x_t], dim=-1), w.hyper_ih, w.hyper_bias) + hh @ w.hyper_hh.T
        hh, hc = _lstm_update(hyper_gates, hc)
        z_h, z_x, z_b = (hh @ w.z_weight.T + F.pad(w.z_bias, (0, n_z))).split(n_z, dim=-1)
        gates = (
            (z_h @ w.d_h.T) * (h @ w.weight_hh.T)
            + (z_x @ w.d_x.T) * (x_t @ w.weight_ih.T)
            + z_b @ w.d_b.T
            + w.bias
        )
        h, c = _lstm_update(gates, c)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else x.new_zeros(x.shape[0], 0, h.shape[-1])
    return out, (h, c, hh, hc)
