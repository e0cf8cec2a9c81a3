"""ops/rwkv7: the chunked diagonal-plus-rank-one delta rule against RWKV-7's per-step reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.rwkv7 import rwkv7_chunk, rwkv7_recurrent, rwkv7_reference

B, T, H, K, V = 2, 19, 2, 5, 3


def inputs(decay_scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    r, k, v = rand(B, T, H, K), rand(B, T, H, K), rand(B, T, H, V)
    kappa = F.normalize(rand(B, T, H, K), dim=-1)
    a = torch.sigmoid(rand(B, T, H, K))
    log_w = -decay_scale * torch.sigmoid(rand(B, T, H, K))
    state = rand(B, H, K, V)
    return r, log_w, k, v, kappa, a, state


@pytest.mark.parametrize("chunk_size", [1, 4, 8, 32])
def test_chunk_matches_reference_outputs_and_gradients(chunk_size):
    r, log_w, k, v, kappa, a, state = (t.requires_grad_() for t in inputs())
    leaves = (r, log_w, k, v, kappa, a, state)
    y_ref, s_ref = rwkv7_reference(r, log_w, k, v, kappa, a, state=state)
    y, s = rwkv7_chunk(r, log_w, k, v, -kappa, kappa * a, state=state, chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    gy, gs = torch.randn_like(y), torch.randn_like(s)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (s_ref * gs).sum(), leaves)
    grads = torch.autograd.grad((y * gy).sum() + (s * gs).sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want)


def test_recurrent_steps_match_reference():
    r, log_w, k, v, kappa, a, state = inputs()
    y_ref, s_ref = rwkv7_reference(r, log_w, k, v, kappa, a, state=state)
    s = state
    for t in range(T):
        y, s = rwkv7_recurrent(r[:, t], log_w[:, t], k[:, t], v[:, t], -kappa[:, t], (kappa * a)[:, t], s)
        torch.testing.assert_close(y, y_ref[:, t])
    torch.testing.assert_close(s, s_ref)


def test_strong_decay_stays_finite_in_float32():
    # log-decays of -40 per step: a factored exp(G_t) exp(-G_i) would overflow float32 inside a chunk
    r, log_w, k, v, kappa, a, state = inputs(decay_scale=80.0)
    y_ref, _ = rwkv7_reference(r, log_w, k, v, kappa, a, state=state)
    f32 = [t.float() for t in (r, log_w, k, v, kappa, a, state)]
    r, log_w, k, v, kappa, a, state = f32
    y, s = rwkv7_chunk(r, log_w, k, v, -kappa, kappa * a, state=state, chunk_size=16)
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)


def test_without_the_rank_one_term_the_state_is_a_decayed_sum():
    # a = 0 (no in-context learning): S_T = sum_t (prod_{s>t} w_s) k_t v_t^T, RWKV-6 / GLA's state
    r, log_w, k, v, kappa, _, _ = inputs()
    zero = torch.zeros_like(kappa)
    _, s = rwkv7_chunk(r, log_w, k, v, zero, zero, chunk_size=8)
    later = log_w.flip(1).cumsum(1).flip(1) - log_w  # sum of log-decays after step t
    expected = torch.einsum("bthk,bthv->bhkv", k * torch.exp(later), v)
    torch.testing.assert_close(s, expected)


@pytest.mark.parametrize("chunk_size", [5, 16])
def test_bounded_decay_factored_form_matches_reference(chunk_size):
    r, log_w, k, v, kappa, a, state = (t.requires_grad_() for t in inputs(decay_scale=0.6))
    leaves = (r, log_w, k, v, kappa, a, state)
    y_ref, s_ref = rwkv7_reference(r, log_w, k, v, kappa, a, state=state)
    y, s = rwkv7_chunk(
        r, log_w, k, v, -kappa, kappa * a, state=state, chunk_size=chunk_size, min_log_decay=-0.6
    )
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    grads_ref = torch.autograd.grad(y_ref.sum() + s_ref.sum(), leaves)
    grads = torch.autograd.grad(y.sum() + s.sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want)
