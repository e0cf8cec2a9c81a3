"""Titans memory ops: the chunked form equals per-token gradient descent with momentum and decay
(outputs, memory, momentum, gradients), also when a call starts or ends inside a chunk."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.titans import titans_chunk, titans_reference

B, H, K, M = 2, 2, 4, 6


# (tokens already in the current chunk of 5, tokens in the call): several chunks, a call ending
# on a chunk boundary, one inside a chunk, one token completing a chunk
@pytest.mark.parametrize(("pos", "T"), [(0, 13), (3, 13), (3, 7), (1, 2), (4, 1)])
def test_chunk_matches_reference(pos, T):
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    q, k, v = (r(B, T, H, K) for _ in range(3))
    eta, alpha = (torch.rand(B, T, H, generator=g, dtype=torch.float64).requires_grad_() for _ in range(2))
    theta = (0.2 * torch.rand(B, T, H, generator=g, dtype=torch.float64)).requires_grad_()
    shapes = [(B, H, M, K), (B, H, K, M)] * 3
    state = (*(r(*s, scale=0.3) for s in shapes), pos)
    leaves = [q, k, v, eta, theta, alpha, *state[:-1]]
    results = []
    for op in (titans_reference, titans_chunk):
        y, new = op(q, k, v, eta, theta, alpha, state, chunk_size=5)
        loss = y.square().sum() + sum(w.sum() for w in new[:-1])
        results.append((y, new, torch.autograd.grad(loss, leaves)))
    (y_ref, s_ref, g_ref), (y, s, gr) = results
    torch.testing.assert_close(y, y_ref)
    assert s[-1] == s_ref[-1] == (pos + T) % 5
    for a, b in zip((*s[:-1], *gr), (*s_ref[:-1], *g_ref)):
        torch.testing.assert_close(a, b)
