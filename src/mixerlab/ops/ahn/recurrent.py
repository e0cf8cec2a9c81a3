"""One decoding step of AHN's mixer: attend over the window, read the memory, write the leaver.

Shapes as in :mod:`mixerlab.ops.ahn.reference` with ``T = 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.attention import attention_parallel


def ahn_recurrent(
    q_att: Tensor,
    k_att: Tensor,
    v: Tensor,
    q_mem: Tensor,
    k_mem: Tensor,
    log_a: Tensor,
    M0: Tensor,
    *,
    window: int,
) -> tuple[Tensor, Tensor]:
    L = k_att.shape[1]
    o = attention_parallel(q_att, k_att, v, window=window)
    o = o + torch.einsum("bthk,bhkv->bthv", q_mem, M0)
    e = L - window  # the position this token pushes out of the window
    M = M0
    if e >= 0:
        M = torch.exp(log_a[:, e])[..., None, None] * M0 + torch.einsum("bhk,bhv->bhkv", k_mem[:, e], v[:, e])
    return o, M
