"""Gated slot attention op: both chunked passes against the per-step loop, and the slot mechanics."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.gsa import gsa_chunk, gsa_reference, value_decay_chunk

B, T, H, K, M, V = 2, 33, 2, 4, 5, 3


def _inputs(decay_scale: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    log_alpha = -decay_scale * torch.rand(B, T, H, M, generator=g, dtype=torch.float64)
    Ks = torch.randn(B, H, M, K, generator=g, dtype=torch.float64)
    Vs = torch.randn(B, H, M, V, generator=g, dtype=torch.float64)
    return q, k, v, log_alpha, Ks, Vs


@pytest.mark.parametrize("decay_scale", [0.2, 40.0], ids=["mild", "strong"])
def test_chunk_matches_reference_outputs_slots_and_gradients(decay_scale):
    tensors = [t.requires_grad_() for t in _inputs(decay_scale)]
    q, k, v, log_alpha, Ks, Vs = tensors
    ref = gsa_reference(q, k, v, log_alpha, key_slots=Ks, value_slots=Vs)
    out = gsa_chunk(q, k, v, log_alpha, key_slots=Ks, value_slots=Vs, chunk_size=8)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b)
    w = [torch.randn_like(a) for a in out]
    grads = torch.autograd.grad(sum((a * w_i).sum() for a, w_i in zip(out, w)), tensors)
    grads_ref = torch.autograd.grad(sum((a * w_i).sum() for a, w_i in zip(ref, w)), tensors)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_value_side_decay_matches_a_plain_loop():
    q, k, v, log_alpha, _, _ = _inputs(3.0)
    log_decay = log_alpha[..., :V]
    S = torch.zeros(B, H, K, V, dtype=torch.float64)
    outs = []
    for t in range(T):
        S = S * log_decay[:, t].exp()[:, :, None, :] + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o, S_chunk = value_decay_chunk(q, k, v, log_decay, chunk_size=7)
    torch.testing.assert_close(o, torch.stack(outs, dim=1))
    torch.testing.assert_close(S_chunk, S)


def test_closed_gate_fills_every_slot_with_the_current_token():
    """``alpha = 0``: every slot holds ``k_t, v_t``, the softmax is uniform and ``o_t = v_t``."""
    q, k, v, _, Ks, Vs = _inputs(1.0)
    closed = torch.full((B, T, H, M), -80.0, dtype=torch.float64)
    o, Ks_out, _ = gsa_chunk(q, k, v, closed, key_slots=Ks, value_slots=Vs, chunk_size=8)
    torch.testing.assert_close(o, v)
    torch.testing.assert_close(Ks_out, k[:, -1, :, None, :].expand(B, H, M, K))


def test_one_slot_is_a_gated_average_of_values():
    """With ``M = 1`` the read softmax is 1: ``o_t = V_t = alpha_t V_{t-1} + (1 - alpha_t) v_t``."""
    q, k, v, log_alpha, _, _ = _inputs(1.0)
    a = log_alpha[..., :1]
    o, _, _ = gsa_chunk(q, k, v, a, chunk_size=8)
    h = torch.zeros(B, H, V, dtype=torch.float64)
    for t in range(T):
        h = a[:, t].exp() * h + (1 - a[:, t].exp()) * v[:, t]
        torch.testing.assert_close(o[:, t], h)
