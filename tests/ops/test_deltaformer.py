"""ops/deltaformer: the triangular-solve form against the per-step reference."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.attention import attention_reference
from mixerlab.ops.deltaformer import deltaformer_parallel, deltaformer_reference

B, T, H, K, V = 2, 13, 2, 4, 3


def inputs(cached: int):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = rand(B, T, H, K), rand(B, T, H, K), rand(B, T, H, V)
    beta = torch.sigmoid(rand(B, T, H))
    return q, k, v, beta, rand(B, cached, H, K), rand(B, cached, H, V)


@pytest.mark.parametrize("cached", [0, 5])
def test_parallel_matches_reference_outputs_and_gradients(cached):
    leaves = tuple(t.requires_grad_() for t in inputs(cached))
    want = deltaformer_reference(*leaves)
    got = deltaformer_parallel(*leaves)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    gy = torch.randn_like(want[0])
    wanted = [t for t in leaves if t.numel()]
    grads_ref = torch.autograd.grad((want[0] * gy).sum() + want[2].sum(), wanted)
    grads = torch.autograd.grad((got[0] * gy).sum() + got[2].sum(), wanted)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_zero_write_strength_is_causal_softmax_attention():
    q, k, v, beta, k_cache, u_cache = inputs(0)
    o, _, u = deltaformer_parallel(q, k, v, torch.zeros_like(beta), k_cache, u_cache)
    torch.testing.assert_close(u, v)
    torch.testing.assert_close(o, attention_reference(q, k, v))
