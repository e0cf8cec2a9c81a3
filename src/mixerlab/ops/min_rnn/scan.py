"""minGRU / minLSTM in parallel over time: the log-space scan of the paper's appendix.

"Were RNNs All We Needed?" (arXiv:2410.01201) computes ``h_t = a_t h_{t-1} + b_t`` with
``a_t in (0, 1)`` and ``b_t > 0`` by Heinsen's log-space scan (arXiv:2311.06281)::

    L_t   = sum_{r<=t} log a_r
    h_t   = exp(L_t) h_0 + exp(L_t + logcumsumexp_{s<=t}(log b_s - L_s))

Every log is taken straight from the pre-activations (``log sigmoid(k) = -softplus(-k)``,
``log g(v)``), so no gate is ever rounded to 0 or 1 before its log. ``h_0`` enters linearly, so
an initial state of any sign (zeros by default) needs no log.

The scan runs over chunks of ``chunk_size`` tokens with the state carried between them (a loop
over chunks, not tokens): ``L`` grows linearly with length and ``exp(L_t - L_s)`` formed from two
large numbers loses about ``|L| * eps`` of relative precision, so resetting ``L`` per chunk keeps
float32 accurate on long sequences.

Shapes: ``k_*: [B, T, H]``; ``state: [B, H]``. Returns ``(h [B, T, H], state [B, H])``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def log_g(v: Tensor) -> Tensor:
    """``log g(v)`` computed without forming ``g`` (see :func:`.reference.g`)."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def log_space_scan(
    log_a: Tensor, log_b: Tensor, *, state: Tensor | None = None, chunk_size: int = 256
) -> tuple[Tensor, Tensor]:
    """``h_t = a_t h_{t-1} + b_t`` over dim 1 from ``log a``, ``log b: [B, T, H]``."""
    h = state
    hs = []
    for start in range(0, log_a.shape[1], chunk_size):
        la, lb = log_a[:, start : start + chunk_size], log_b[:, start : start + chunk_size]
        L = torch.cumsum(la, dim=1)
        out = torch.exp(torch.logcumsumexp(lb - L, dim=1) + L)
        if h is not None:
            out = out + torch.exp(L) * h[:, None]
        h = out[:, -1]
        hs.append(out)
    if h is None:
        h = log_a.new_zeros(log_a.shape[0], log_a.shape[2])
    out = torch.cat(hs, dim=1) if hs else log_a[:, :0].clone()
    return out, h


def mingru_scan(
    k_z: Tensor, k_h: Tensor, *, state: Tensor | None = None, chunk_size: int = 256
) -> tuple[Tensor, Tensor]:
    log_z, log_one_minus_z = -F.softplus(-k_z), -F.softplus(k_z)
    return log_space_scan(log_one_minus_z, log_z + log_g(k_h), state=state, chunk_size=chunk_size)


def minlstm_scan(
    k_f: Tensor, k_i: Tensor, k_h: Tensor, *, state: Tensor | None = None, chunk_size: int = 256
) -> tuple[Tensor, Tensor]:
    # log(i/f) = log sigmoid(k_i) - log sigmoid(k_f); then f' = sigmoid(-that), i' = sigmoid(that)
    diff = F.softplus(-k_f) - F.softplus(-k_i)
    log_f, log_i = -F.softplus(diff), -F.softplus(-diff)
    return log_space_scan(log_f, log_i + log_g(k_h), state=state, chunk_size=chunk_size)
