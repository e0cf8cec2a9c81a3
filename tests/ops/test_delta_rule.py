"""The (gated) delta rule: chunk and one-step forms against the per-step reference, plus closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.delta_rule import delta_rule_chunk, delta_rule_recurrent, delta_rule_reference

B, T, H, K, V = 2, 29, 2, 5, 3


def make_inputs(seed: int = 0, beta_max: float = 1.0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q = rand(B, T, H, K)
    k = F.normalize(rand(B, T, H, K), dim=-1)
    v = rand(B, T, H, V)
    beta = beta_max * torch.rand(B, T, H, generator=g, dtype=torch.float64)
    decay = -torch.rand(B, T, H, generator=g, dtype=torch.float64)
    state = rand(B, H, K, V)
    return q, k, v, beta, decay, state


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("beta_max", [1.0, 2.0])
@pytest.mark.parametrize("chunk_size", [1, 4, 8, 64])
def test_chunk_matches_reference_outputs_states_and_gradients(gated, beta_max, chunk_size):
    q, k, v, beta, decay, state = make_inputs(beta_max=beta_max)
    decay = decay if gated else None
    leaves = [t.requires_grad_() for t in (q, k, v, beta, state)] + (
        [decay.requires_grad_()] if gated else []
    )
    o_ref, s_ref = delta_rule_reference(q, k, v, beta, decay, state=state)
    o, s = delta_rule_chunk(q, k, v, beta, decay, state=state, chunk_size=chunk_size)
    torch.testing.assert_close(o, o_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-9, atol=1e-10)
    w_o, w_s = torch.randn_like(o), torch.randn_like(s)
    grads_ref = torch.autograd.grad((o_ref * w_o).sum() + (s_ref * w_s).sum(), leaves)
    grads = torch.autograd.grad((o * w_o).sum() + (s * w_s).sum(), leaves)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("gated", [False, True])
def test_recurrent_steps_match_reference(gated):
    q, k, v, beta, decay, state = make_inputs(seed=1)
    decay = decay if gated else None
    o_ref, s_ref = delta_rule_reference(q, k, v, beta, decay, state=state)
    s, outs = state, []
    for t in range(T):
        o, s = delta_rule_recurrent(
            q[:, t], k[:, t], v[:, t], beta[:, t], None if decay is None else decay[:, t], s
        )
        outs.append(o)
    torch.testing.assert_close(torch.stack(outs, 1), o_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-12)


def test_beta_one_stores_the_value_exactly():
    """With ``beta = 1`` and unit keys, reading with ``q_t = k_t`` returns ``v_t`` whatever came before."""
    q, k, v, beta, _, state = make_inputs(seed=2)
    o, _ = delta_rule_chunk(k, k, v, torch.ones_like(beta), state=state, scale=1.0, chunk_size=8)
    torch.testing.assert_close(o, v, rtol=1e-10, atol=1e-10)


def test_beta_two_is_a_reflection():
    """``beta = 2`` with ``v = 0``: ``I - 2 k k^T`` flips the stored value along ``k``; twice is identity."""
    _, k, v, _, _, state = make_inputs(seed=3)
    k2 = k[:, :1].expand(B, 2, H, K)
    zeros_v = torch.zeros(B, 2, H, V, dtype=torch.float64)
    beta2 = torch.full((B, 2, H), 2.0, dtype=torch.float64)
    o, s = delta_rule_chunk(k2, k2, zeros_v, beta2, state=state, scale=1.0, chunk_size=4)
    read0 = torch.einsum("bhk,bhkv->bhv", k2[:, 0], state)
    torch.testing.assert_close(o[:, 0], -read0)
    torch.testing.assert_close(o[:, 1], read0)
    torch.testing.assert_close(s, state)


def test_gate_alone_decays_the_state():
    """``beta = 0``: the state only decays, by ``exp(sum g)``."""
    q, k, v, beta, decay, state = make_inputs(seed=4)
    _, s = delta_rule_chunk(q, k, v, torch.zeros_like(beta), decay, state=state, chunk_size=8)
    expected = state * torch.exp(decay.sum(1))[..., None, None]
    torch.testing.assert_close(s, expected)


def test_strong_decay_stays_finite():
    """Large log-decays would overflow if any positive exponent were taken."""
    q, k, v, beta, decay, state = make_inputs(seed=5)
    o, s = delta_rule_chunk(q, k, v, beta, decay * 200.0, state=state, chunk_size=16)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
