"""ParaGRU evaluated one step after another: the specification.

"ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for Large Language Models"
(arXiv:2510.21450). Shapes: ``pre: [B, T, 3, N]``, ``A: [3, N]``, ``h0: [B, N]`` -> ``h: [B, T, N]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pararnn_reference(pre: Tensor, A: Tensor, h0: Tensor | None = None) -> Tensor:
    B, T, _, N = pre.shape
    h = pre.new_zeros(B, N) if h0 is None else h0
    outs = []
    for pre_t in pre.unbind(1):  # unbound: per-step indexing is O(T^2) under autograd
        z = torch.sigmoid(pre_t[:, 0] + A[0] * h)
        r = torch.sigmoid(pre_t[:, 1] + A[1] * h)
        c = torch.tanh(pre_t[:, 2] + A[2] * r * h)
        h = (1 - z) * h + z * c
        outs.append(h)
    return torch.stack(outs, dim=1) if outs else pre.new_zeros(B, 0, N)
