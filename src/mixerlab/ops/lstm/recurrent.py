"""One LSTM decoding step (equations in :mod:`.reference`) through ``torch.lstm_cell``.

Shapes: ``x: [B, 1, D]``; ``h, c: [B, H]``. Returns ``(h [B, 1, H], (h, c))``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lstm_recurrent(
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    *,
    state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    if state is None:
        h = c = x.new_zeros(x.shape[0], weight_hh.shape[1])
    else:
        h, c = state
    h, c = torch.lstm_cell(x[:, 0], (h, c), weight_ih, weight_hh, bias_ih, bias_hh)
    return h[:, None], (h, c)
