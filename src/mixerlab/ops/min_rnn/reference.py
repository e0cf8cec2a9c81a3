"""minGRU and minLSTM as plain loops over time (the specification).

"Were RNNs All We Needed?" (arXiv:2410.01201), sections 3.1.3 and 3.2.3 with the positive
candidate map ``g`` of the log-space versions (appendix)::

    g(v) = v + 0.5 if v >= 0 else sigmoid(v)           # keeps every h~ and h positive
    minGRU:  z_t = sigmoid(k_z),  h_t = (1 - z_t) h_{t-1} + z_t g(k_h)
    minLSTM: f_t = sigmoid(k_f),  i_t = sigmoid(k_i),
             f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t),
             h_t = f'_t h_{t-1} + i'_t g(k_h)

The pre-activations ``k_*`` are the outputs of the layer's linear maps of ``x_t``.

Shapes: ``k_*: [B, T, H]``; ``state: [B, H]`` (``h`` before the first token, zeros if None).
Every function returns ``(h [B, T, H], state [B, H])``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def g(v: Tensor) -> Tensor:
    """The paper's continuous positive map used in place of tanh for the candidate state."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def _loop(coeff: Tensor, value: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
    h = coeff.new_zeros(coeff.shape[0], coeff.shape[2]) if state is None else state
    hs = []
    for t in range(coeff.shape[1]):
        h = coeff[:, t] * h + value[:, t]
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else coeff[:, :0].clone()
    return out, h


def mingru_reference(k_z: Tensor, k_h: Tensor, *, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    z = torch.sigmoid(k_z)
    return _loop(1 - z, z * g(k_h), state)


def minlstm_reference(
    k_f: Tensor, k_i: Tensor, k_h: Tensor, *, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    return _loop(f / (f + i), i / (f + i) * g(k_h), state)
