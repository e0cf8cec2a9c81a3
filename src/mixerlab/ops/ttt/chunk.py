"""TTT-Linear and TTT-MLP, fast form: mini-batch TTT in the dual form (arXiv:2407.04620, sec. 2.5).

Inside a mini-batch every gradient is taken at the same ``W_base``, so all of them come from
one batched forward/backward of the inner model over the mini-batch (hand-derived below), and
the weights a token sees, ``W_t = W_start - sum_{s<=t} eta_s g_s`` with rank-one ``g_s = d_s k_s^T``,
never need to be formed: ``W_t q_t = W_start q_t - sum_{s<=t} eta_s (k_s . q_t) d_s``, a causally
masked ``[C, C]`` product (the paper's dual form). For TTT-MLP the same holds layer by layer:
the first layer's weights meet ``q_t``, the second's the hidden activations ``gelu(W1_t q_t)``.
Only the mini-batches are walked in Python (``T / b`` steps). A call that starts inside a
mini-batch (``pos > 0``, after a split) first completes it.

Shapes and state as in :mod:`mixerlab.ops.ttt.reference`; inside a mini-batch ``[B, C, H, K]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mixerlab.ops.ttt.reference import LN_EPS, layer_norm


def _segments(T: int, pos: int, b: int) -> list[int]:
    """Lengths of the pieces of ``T`` tokens cut at mini-batch ends, the first ``b - pos`` long."""
    out, first = [], b - pos
    while T > 0:
        out.append(min(first, T))
        T -= out[-1]
        first = b
    return out


def _loss_grad(z: Tensor, k: Tensor, v: Tensor, ln_weight: Tensor, ln_bias: Tensor) -> Tensor:
    """``d/dz 1/2 ||LN(z) + k - v||^2`` over the last axis (LayerNorm's backward by hand)."""
    mu = z.mean(-1, keepdim=True)
    rstd = torch.rsqrt((z - mu).square().mean(-1, keepdim=True) + LN_EPS)
    z_hat = (z - mu) * rstd
    g_hat = (z_hat * ln_weight + ln_bias + k - v) * ln_weight
    return (g_hat - g_hat.mean(-1, keepdim=True) - z_hat * (g_hat * z_hat).mean(-1, keepdim=True)) * rstd


def _gelu_grad(x: Tensor) -> Tensor:
    """Derivative of the exact (erf) GELU: ``Phi(x) + x phi(x)``."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-0.5 * x.square()) / math.sqrt(2 * math.pi)


def _dual(w: Tensor, queries: Tensor, keys: Tensor, deltas: Tensor, lr: Tensor) -> Tensor:
    """``W_t x_t`` for ``W_t = W - sum_{s<=t} lr_s deltas_s keys_s^T`` without forming ``W_t``.

    ``w: [B, H, O, I]``, ``queries, keys: [B, C, H, I]``, ``deltas: [B, C, H, O]``, ``lr: [B, C, H]``.
    """
    C = queries.shape[1]
    scores = torch.einsum("bthi,bshi->bhts", queries, keys) * lr.permute(0, 2, 1)[:, :, None, :]
    scores = scores.masked_fill(~torch.ones(C, C, dtype=torch.bool, device=w.device).tril(), 0.0)
    return torch.einsum("bhoi,bthi->btho", w, queries) - torch.einsum("bhts,bsho->btho", scores, deltas)


def _step(w: Tensor, keys: Tensor, deltas: Tensor, lr: Tensor) -> Tensor:
    """``W - sum_s lr_s deltas_s keys_s^T`` (the weights after the piece)."""
    return w - torch.einsum("bsh,bsho,bshi->bhoi", lr, deltas, keys)


def ttt_linear_chunk(
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
    """TTT-Linear, dual form; same arguments and returns as ``ttt_linear_reference``."""
    w, w_base, pos = state
    outs, start = [], 0
    for n in _segments(q.shape[1], pos, mini_batch_size):
        qc, kc, vc, lc = (t[:, start : start + n] for t in (q, k, v, lr))
        delta = _loss_grad(torch.einsum("bhoi,bchi->bcho", w_base, kc), kc, vc, ln_weight, ln_bias)
        outs.append(qc + layer_norm(_dual(w, qc, kc, delta, lc), ln_weight, ln_bias))
        w = _step(w, kc, delta, lc)
        start, pos = start + n, pos + n
        if pos == mini_batch_size:
            w_base, pos = w, 0
    y = torch.cat(outs, dim=1) if outs else q.new_zeros(q.shape)
    return y, (w, w_base, pos)


def ttt_mlp_chunk(
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
    """TTT-MLP, dual form per layer; same arguments and returns as ``ttt_mlp_reference``."""
    w1, w2, b1, b2, pos = state
    outs, start = [], 0
    for n in _segments(q.shape[1], pos, mini_batch_size):
        qc, kc, vc, lc = (t[:, start : start + n] for t in (q, k, v, lr))
        # the inner model's forward and backward at the base weights, for every token at once
        pre = torch.einsum("bhmi,bchi->bchm", b1, kc)  # [B, C, H, M]
        act = F.gelu(pre)
        delta2 = _loss_grad(torch.einsum("bhom,bchm->bcho", b2, act), kc, vc, ln_weight, ln_bias)
        delta1 = torch.einsum("bhom,bcho->bchm", b2, delta2) * _gelu_grad(pre)
        hidden = F.gelu(_dual(w1, qc, kc, delta1, lc))
        outs.append(qc + layer_norm(_dual(w2, hidden, act, delta2, lc), ln_weight, ln_bias))
        w1, w2 = _step(w1, kc, delta1, lc), _step(w2, act, delta2, lc)
        start, pos = start + n, pos + n
        if pos == mini_batch_size:
            b1, b2, pos = w1, w2, 0
    y = torch.cat(outs, dim=1) if outs else q.new_zeros(q.shape)
    return y, (w1, w2, b1, b2, pos)
