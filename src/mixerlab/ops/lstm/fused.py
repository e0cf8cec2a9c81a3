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
    params = [weight_ih, weight_hh, bias_ih, bias_hh]
    # ``train`` tells cuDNN to keep what its backward reads (it refuses a backward otherwise, in
    # any module mode); with no dropout it changes nothing else, so it follows the autograd need.
    train = torch.is_grad_enabled() and any(t.requires_grad for t in (x, h, c, *params))
    # one layer, with biases, no dropout, unidirectional, batch first
    out, h_n, c_n = torch.lstm(x, (h[None], c[None]), params, True, 1, 0.0, train, False, True)
    return out, (h_n[0], c_n[0])
