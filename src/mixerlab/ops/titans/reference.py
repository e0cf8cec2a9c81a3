"""Titans' neural memory as per-token gradient descent with momentum and weight decay (the spec).

"Titans: Learning to Memorize at Test Time" (arXiv:2501.00663, sec. 3.1-3.2). The memory is an
MLP ``M(k) = W2 silu(W1 k)`` per head, trained while reading on the associative loss
``l(M; k, v) = 1/2 ||M(k) - v||^2``; its surprise is a momentum of gradients, and weight decay
forgets::

    S_t = eta_t S_{t-1} - theta_t grad l(M_base; k_t, v_t)      (momentum: past surprise)
    M_t = (1 - alpha_t) M_{t-1} + S_t                          (forgetting gate alpha_t)
    y_t = M_t(q_t)                                             (read with the query)

with ``eta_t, theta_t, alpha_t`` in ``(0, 1)`` per token and head. The gradients of the
``b = chunk_size`` tokens of a chunk are all taken at ``M_base``, the memory at the end of the
previous chunk (the paper's parallelised training, sec. 3.2; ``b`` is part of the definition and
``b = 1`` is online descent). The gradient comes from ``torch.autograd`` on the loss as written.

Shapes: ``q, k, v: [B, T, H, K]``; ``eta, theta, alpha: [B, T, H]``; memory ``W1: [B, H, M, K]``,
``W2: [B, H, K, M]`` and momenta of the same shapes. State: ``(W1, W2, S1, S2, W1_base, W2_base,
pos)`` with ``pos`` the number of tokens already in the current chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TitansState = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int]


def memory_read(w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    """``W2 silu(W1 x)`` per head: ``w1: [B, H, M, K]``, ``w2: [B, H, K, M]``, ``x: [B, H, K]``."""
    return torch.einsum("bhkm,bhm->bhk", w2, F.silu(torch.einsum("bhmk,bhk->bhm", w1, x)))


def titans_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    eta: Tensor,
    theta: Tensor,
    alpha: Tensor,
    state: TitansState,
    *,
    chunk_size: int,
) -> tuple[Tensor, TitansState]:
    """Returns ``(y: [B, T, H, K], new state)``."""
    w1, w2, s1, s2, b1, b2, pos = state
    ys = []
    for q_t, k_t, v_t, eta_t, theta_t, alpha_t in zip(*(t.unbind(1) for t in (q, k, v, eta, theta, alpha))):
        with torch.enable_grad():
            probe = tuple(w if w.requires_grad else w.detach().requires_grad_() for w in (b1, b2))
            loss = 0.5 * (memory_read(*probe, k_t) - v_t).square().sum()
            g1, g2 = torch.autograd.grad(loss, probe, create_graph=True)
        e, th, keep = eta_t[..., None, None], theta_t[..., None, None], (1 - alpha_t)[..., None, None]
        s1, s2 = e * s1 - th * g1, e * s2 - th * g2
        w1, w2 = keep * w1 + s1, keep * w2 + s2
        ys.append(memory_read(w1, w2, q_t))
        pos += 1
        if pos == chunk_size:
            b1, b2, pos = w1, w2, 0
    y = torch.stack(ys, dim=1) if ys else q.new_zeros(q.shape)
    return y, (w1, w2, s1, s2, b1, b2, pos)
