"""Titans memory: without momentum and decay one chunk is one gradient step; a surprise keeps
moving the memory through the momentum; the forgetting gate decays it; the state is fixed-size."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.ops.titans import titans_chunk, titans_reference
from mixerlab.ops.titans.reference import memory_read

B, T, H, K, M = 1, 7, 2, 4, 6


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, T, H, K, generator=g, dtype=torch.float64) for _ in range(3))
    w1 = 0.5 * torch.randn(B, H, M, K, generator=g, dtype=torch.float64)
    w2 = 0.5 * torch.randn(B, H, K, M, generator=g, dtype=torch.float64)
    state = (w1, w2, torch.zeros_like(w1), torch.zeros_like(w2), w1, w2, 0)
    return q, k, v, state


def _grads(w1, w2, k, v, weights):
    """Gradients at ``(w1, w2)`` of ``sum_t weights_t 1/2 ||M(k_t) - v_t||^2``."""
    w1, w2 = w1.clone().requires_grad_(), w2.clone().requires_grad_()
    loss = sum(
        (weights[:, t, :, None] * 0.5 * (memory_read(w1, w2, k[:, t]) - v[:, t]).square()).sum()
        for t in range(k.shape[1])
    )
    return torch.autograd.grad(loss, (w1, w2))


@pytest.mark.parametrize("op", [titans_chunk, titans_reference])
def test_no_momentum_no_decay_is_one_gradient_step_per_chunk(op):
    q, k, v, state = _setup()
    theta = 0.1 * torch.rand(B, T, H, dtype=torch.float64)
    zeros = torch.zeros(B, T, H, dtype=torch.float64)
    _, (w1, w2, *_rest) = op(q, k, v, zeros, theta, zeros, state, chunk_size=16)
    g1, g2 = _grads(state[0], state[1], k, v, theta)
    torch.testing.assert_close(w1, state[0] - g1)
    torch.testing.assert_close(w2, state[1] - g2)


@pytest.mark.parametrize("op", [titans_chunk, titans_reference])
def test_momentum_carries_a_surprise_forward(op):
    q, k, v, state = _setup(1)
    theta = torch.zeros(B, T, H, dtype=torch.float64)
    theta[:, 0] = 0.1  # only the first token surprises the memory
    eta = torch.full((B, T, H), 0.5, dtype=torch.float64)
    _, (w1, _, s1, *_rest) = op(q, k, v, eta, theta, torch.zeros_like(eta), state, chunk_size=16)
    g1, _ = _grads(state[0], state[1], k[:, :1], v[:, :1], theta[:, :1])
    steps = sum(0.5**t for t in range(T))  # the memory moves by S_0 (1 + eta + eta^2 + ...)
    torch.testing.assert_close(w1, state[0] - steps * g1)
    torch.testing.assert_close(s1, -(0.5 ** (T - 1)) * g1)


@pytest.mark.parametrize("op", [titans_chunk, titans_reference])
def test_forgetting_gate_decays_the_memory(op):
    q, k, v, state = _setup(2)
    zeros = torch.zeros(B, T, H, dtype=torch.float64)
    alpha = torch.full((B, T, H), 0.1, dtype=torch.float64)
    _, (w1, w2, *_rest) = op(q, k, v, zeros, zeros, alpha, state, chunk_size=3)
    torch.testing.assert_close(w1, 0.9**T * state[0])
    torch.testing.assert_close(w2, 0.9**T * state[1])


def test_state_size_is_constant():
    mixer = mixerlab.create_token_mixer("titans", dim=16, num_heads=2)
    assert mixer.state_size(1) == mixer.state_size(100_000)
