"""The Mesa operator (MesaNet, arXiv:2506.05233): the chunked form against the per-step solve,
and two independent checks of what the layer computes (a ridge regression; linear attention in the
limit of a large regulariser)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.linear_attention import linear_attention_reference
from mixerlab.ops.mesa import mesa_chunk, mesa_recurrent, mesa_reference

B, H, K, V = 2, 2, 4, 3


def _inputs(T: int, seed: int = 0, gate_bias: float = 2.0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k = randn(B, T, H, K), F.normalize(randn(B, T, H, K), dim=-1)
    v = randn(B, T, H, V)
    log_decay = F.logsigmoid(randn(B, T, H) + gate_bias)
    beta = torch.sigmoid(randn(B, T, H))
    lam = 0.25 + torch.rand(H, K, generator=g, dtype=torch.float64)
    return q, k, v, log_decay, beta, lam


@pytest.mark.parametrize(("T", "chunk_size", "gate_bias"), [(33, 8, 2.0), (17, 16, -4.0), (5, 8, 0.0)])
def test_chunk_matches_reference_outputs_states_and_gradients(T, chunk_size, gate_bias):
    inputs = [t.requires_grad_() for t in _inputs(T, gate_bias=gate_bias)]
    kv0 = torch.randn(B, H, K, V, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    state = (torch.eye(K, dtype=torch.float64).expand(B, H, K, K) * 0.5, kv0)
    o_fast, (kk_fast, kv_fast) = mesa_chunk(*inputs, initial_state=state, chunk_size=chunk_size)
    o_ref, (kk_ref, kv_ref) = mesa_reference(*inputs, initial_state=state)
    torch.testing.assert_close(o_fast, o_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(kk_fast, kk_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(kv_fast, kv_ref, rtol=1e-9, atol=1e-11)
    upstream = torch.randn_like(o_ref)
    grads_fast = torch.autograd.grad(o_fast, inputs, upstream)
    grads_ref = torch.autograd.grad(o_ref, inputs, upstream)
    for name, a, b in zip(("q", "k", "v", "log_decay", "beta", "lam"), grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"d{name}: {m}")


def test_recurrent_step_matches_reference():
    q, k, v, log_decay, beta, lam = _inputs(6)
    o_ref, state_ref = mesa_reference(q, k, v, log_decay, beta, lam)
    state = (torch.zeros(B, H, K, K, dtype=torch.float64), torch.zeros(B, H, K, V, dtype=torch.float64))
    for t in range(6):
        o_t, state = mesa_recurrent(q[:, t], k[:, t], v[:, t], log_decay[:, t], beta[:, t], lam, state)
        torch.testing.assert_close(o_t, o_ref[:, t])
    torch.testing.assert_close(state[0], state_ref[0])
    torch.testing.assert_close(state[1], state_ref[1])


def test_output_is_the_ridge_regression_fitted_to_the_past():
    """No forgetting, beta = 1: ``o_t = W_t q_t`` with ``W_t`` the least-squares fit of
    ``v_s ~ W k_s`` (s <= t) plus ``|W Lambda^(1/2)|^2``, solved here by ``lstsq`` on the stacked,
    augmented system ``[k_s; Lambda^(1/2)] W^T = [v_s; 0]``."""
    T = 7
    q, k, v, _, _, lam = _inputs(T)
    zeros, ones = torch.zeros(B, T, H, dtype=torch.float64), torch.ones(B, T, H, dtype=torch.float64)
    o, _ = mesa_chunk(q, k, v, zeros, ones, lam, chunk_size=4)
    for t in (0, 3, T - 1):
        for b in range(B):
            for h in range(H):
                A = torch.cat([k[b, : t + 1, h], torch.diag(lam[h].sqrt())])  # [t+1+K, K]
                Y = torch.cat([v[b, : t + 1, h], torch.zeros(K, V, dtype=torch.float64)])
                w_t = torch.linalg.lstsq(A, Y).solution  # [K, V] = W^T
                torch.testing.assert_close(o[b, t, h], q[b, t, h] @ w_t)


def test_a_large_regulariser_makes_it_scaled_gated_linear_attention():
    q, k, v, log_decay, beta, _ = _inputs(19)
    big = 1e7
    o, _ = mesa_chunk(q, k, v, log_decay, beta, torch.full((H, K), big, dtype=torch.float64), chunk_size=8)
    linear, _ = linear_attention_reference(q, beta[..., None] * k, v, log_decay)
    torch.testing.assert_close(o * big, linear, rtol=1e-5, atol=1e-6)
