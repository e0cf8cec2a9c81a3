"""The LSTM cell as a plain loop over time (the specification).

Vanilla LSTM of "LSTM: A Search Space Odyssey" (arXiv:1503.04069, eqs. of section 2) without
peephole connections (their "NP" variant, which they found on par with the full vanilla LSTM, and
the cell of Hochreiter & Schmidhuber 1997 with the forget gate of Gers et al. 2000)::

    [i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh       (gate order of torch.nn.LSTM)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

Shapes: ``x: [B, T, D]``; ``weight_ih: [4H, D]``; ``weight_hh: [4H, H]``; ``bias_*: [4H]``;
``h, c: [B, H]``. Returns ``(h_seq [B, T, H], (h [B, H], c [B, H]))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lstm_reference(
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    *,
    state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    H = weight_hh.shape[1]
    if state is None:
        h = c = x.new_zeros(x.shape[0], H)
    else:
        h, c = state
    hs = []
    for t in range(x.shape[1]):
        gates = F.linear(x[:, t], weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else x.new_zeros(x.shape[0], 0, H)
    return out, (h, c)
