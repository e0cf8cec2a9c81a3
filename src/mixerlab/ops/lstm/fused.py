"""The LSTM through PyTorch's fused kernel (oneDNN on CPU, cuDNN on GPU): the fast form.

Same equations and parameter layout as :mod:`.reference`; ``torch.lstm`` is the function behind
``nn.LSTM``, called here on the caller's own parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lstm_fused(
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
    # one layer, with biases, no dropout, unidirectional, batch first
    out, h_n, c_n = torch.lstm(
        x, (h[None], c[None]), [weight_ih, weight_hh, bias_ih, bias_hh], True, 1, 0.0, False, False, True
    )
    return out, (h_n[0], c_n[0])
