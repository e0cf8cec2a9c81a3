"""RWKV-6's wkv op: the chunked form (GLA's op with shifted queries) against the per-step loop."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.linear_attention import linear_attention_reference
from mixerlab.ops.rwkv6 import rwkv6_chunk, rwkv6_reference

B, T, H, K, V = 2, 33, 2, 4, 3


def _inputs(decay_scale: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r, k = (torch.randn(B, T, H, K, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    log_w = -decay_scale * torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    u = torch.randn(H, K, generator=g, dtype=torch.float64)
    S0 = torch.randn(B, H, K, V, generator=g, dtype=torch.float64)
    return r, k, v, log_w, u, S0


@pytest.mark.parametrize("decay_scale", [0.1, 30.0], ids=["mild", "strong"])  # strong: sub-chunked scores
def test_chunk_matches_reference_outputs_state_and_gradients(decay_scale):
    tensors = [t.requires_grad_() for t in _inputs(decay_scale)]
    r, k, v, log_w, u, S0 = tensors
    o_ref, S_ref = rwkv6_reference(r, k, v, log_w, u, initial_state=S0)
    o, S = rwkv6_chunk(r, k, v, log_w, u, initial_state=S0, chunk_size=8, subchunk_size=4)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(S, S_ref)
    grads = torch.autograd.grad((o * o_ref.detach()).sum() + S.sum(), tensors)
    grads_ref = torch.autograd.grad((o_ref * o_ref.detach()).sum() + S_ref.sum(), tensors)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_no_decay_and_unit_bonus_is_linear_attention():
    """With ``w = 1`` and ``u = 1`` reading ``S_{t-1} + k_t^T v_t`` is reading ``S_t``."""
    r, k, v, _, _, S0 = _inputs(1.0)
    zero = torch.zeros(B, T, H, K, dtype=torch.float64)
    o, S = rwkv6_reference(r, k, v, zero, torch.ones(H, K, dtype=torch.float64), initial_state=S0)
    o_la, S_la = linear_attention_reference(r, k, v, None, initial_state=S0)
    torch.testing.assert_close(o, o_la)
    torch.testing.assert_close(S, S_la)


def test_current_token_enters_only_through_the_bonus():
    """Output ``t`` reads the state before token ``t``: with ``u = 0`` changing ``k_t, v_t`` leaves
    ``o_t`` unchanged and changes ``o_{t+1}``."""
    r, k, v, log_w, _, S0 = _inputs(1.0)
    u = torch.zeros(H, K, dtype=torch.float64)
    o1, _ = rwkv6_chunk(r, k, v, log_w, u, initial_state=S0, chunk_size=8)
    k2, v2 = k.clone(), v.clone()
    k2[:, 10], v2[:, 10] = 1.0, 1.0
    o2, _ = rwkv6_chunk(r, k2, v2, log_w, u, initial_state=S0, chunk_size=8)
    torch.testing.assert_close(o2[:, :11], o1[:, :11])
    assert not torch.allclose(o2[:, 11], o1[:, 11])
