"""TTT-Linear and TTT-MLP as literal per-token gradient descent (the specification).

"Learning to (Learn at Test Time): RNNs with Expressive Hidden States" (arXiv:2407.04620). The
hidden state is the weights ``W`` of an inner model ``f``; each token takes one gradient step of
the self-supervised reconstruction loss (sec. 2.3, with the residual and LayerNorm of sec. 2.7)::

    loss(W; k, v) = 1/2 || LN(f(W; k)) + k - v ||^2
    W_t = W_t - eta_t grad_W loss(W_base; k_t, v_t)        (W_t starts from W_{t-1})
    z_t = q + LN(f(W_t; q_t))

Mini-batch TTT (sec. 2.4): the gradients of the ``b = mini_batch_size`` tokens of a mini-batch
are all taken at ``W_base``, the weights at the end of the previous mini-batch (``b = 1`` is
plain online gradient descent). The gradient here comes from ``torch.autograd`` on the loss as
written, so it checks the hand-derived gradients of the fast form in :mod:`.chunk`.

``f(W; x) = W x`` (TTT-Linear, ``W: [B, H, K, K]``) or ``f(W1, W2; x) = W2 gelu(W1 x)``
(TTT-MLP, ``W1: [B, H, M, K]``, ``W2: [B, H, K, M]``). Shapes: ``q, k, v: [B, T, H, K]``;
``lr: [B, T, H]`` (the per-token step ``eta_t``); ``ln_weight, ln_bias: [H, K]``. The state is
``(weights, base weights, pos)`` with ``pos`` the number of tokens already in the current
mini-batch (``0 <= pos < b``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LN_EPS = 1e-6


def layer_norm(z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """LayerNorm over the last axis with per-head ``weight, bias: [H, K]``."""
    mu = z.mean(-1, keepdim=True)
    var = (z - mu).square().mean(-1, keepdim=True)
    return (z - mu) * torch.rsqrt(var + LN_EPS) * weight + bias


def _linear(w: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("bhoi,bhi->bho", w, x)


def _gradients(loss_of, weights: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``grad loss_of(weights)`` by autograd, differentiable (also under an outer ``no_grad``)."""
    with torch.enable_grad():
        probe = tuple(w if w.requires_grad else w.detach().requires_grad_() for w in weights)
        return torch.autograd.grad(loss_of(*probe), probe, create_graph=True)


def _ttt_reference(f, q, k, v, lr, ln_weight, ln_bias, weights, base, pos, mini_batch_size):
    outs = []
    for q_t, k_t, v_t, lr_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), lr.unbind(1)):

        def loss(*w, k_t=k_t, v_t=v_t):
            return 0.5 * (layer_norm(f(w, k_t), ln_weight, ln_bias) + k_t - v_t).square().sum()

        grads = _gradients(loss, base)
        weights = tuple(w - lr_t[..., None, None] * g for w, g in zip(weights, grads))
        outs.append(q_t + layer_norm(f(weights, q_t), ln_weight, ln_bias))
        pos += 1
        if pos == mini_batch_size:  # the mini-batch is complete: the next one takes its gradients here
            base, pos = weights, 0
    y = torch.stack(outs, dim=1) if outs else q.new_zeros(q.shape)
    return y, weights, base, pos


def ttt_linear_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: tuple[Tensor, Tensor, int],
    *,
    mini_batch_size: int,
) -> tuple[Tensor, tuple[Tensor, Tensor, int]]:
    """TTT-Linear; ``state = (W, W_base, pos)``. Returns ``(z [B, T, H, K], new state)``."""
    w, w_base, pos = state
    y, (w,), (w_base,), pos = _ttt_reference(
        lambda ws, x: _linear(ws[0], x),
        q,
        k,
        v,
        lr,
        ln_weight,
        ln_bias,
        (w,),
        (w_base,),
        pos,
        mini_batch_size,
    )
    return y, (w, w_base, pos)


def ttt_mlp_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: tuple[Tensor, Tensor, Tensor, Tensor, int],
    *,
    mini_batch_size: int,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor, int]]:
    """TTT-MLP; ``state = (W1, W2, W1_base, W2_base, pos)``. Returns ``(z, new state)``."""
    w1, w2, b1, b2, pos = state
    y, (w1, w2), (b1, b2), pos = _ttt_reference(
        lambda ws, x: _linear(ws[1], F.gelu(_linear(ws[0], x))),
        q,
        k,
        v,
        lr,
        ln_weight,
        ln_bias,
        (w1, w2),
        (b1, b2),
        pos,
        mini_batch_size,
    )
    return y, (w1, w2, b1, b2, pos)
