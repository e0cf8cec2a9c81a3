"""One decoding step of minGRU / minLSTM (equations in :mod:`.reference`).

Shapes: ``k_*: [B, 1, H]``; ``state: [B, H]``. Returns ``(h [B, 1, H], state [B, H])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.min_rnn.reference import g


def _step(coeff: Tensor, value: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
    h = value[:, 0] if state is None else coeff[:, 0] * state + value[:, 0]
    return h[:, None], h


def mingru_recurrent(k_z: Tensor, k_h: Tensor, *, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    z = torch.sigmoid(k_z)
    return _step(1 - z, z * g(k_h), state)


def minlstm_recurrent(
    k_f: Tensor, k_i: Tensor, k_h: Tensor, *, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    return _step(f / (f + i), i / (f + i) * g(k_h), state)
