"""Mamba-3 ops: the chunked form (rotations folded into B, C; the trapezoid as two SSDs) equals
the per-step recurrence: outputs, final state and gradients, from a non-zero state."""

from __future__ import annotations

import torch

from mixerlab.ops.mamba3 import mamba3_chunk, mamba3_reference


def test_chunk_matches_reference_with_state_and_gradients():
    g = torch.Generator().manual_seed(0)
    B, T, H, P, N = 2, 13, 3, 4, 6

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    x = r(B, T, H, P)
    dt = (torch.rand(B, T, H, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    A = (-torch.rand(H, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    lam = torch.rand(B, T, H, generator=g, dtype=torch.float64).requires_grad_()
    theta, B_, C_ = r(B, T, N // 2), r(B, T, N), r(B, T, N)
    state = (r(B, H, P, N), r(B, H, P), r(B, N))
    leaves = [x, dt, A, lam, theta, B_, C_, *state]
    results = []
    for op, kw in ((mamba3_reference, {}), (mamba3_chunk, {"chunk_size": 5})):
        y, new = op(x, dt, A, lam, theta, B_, C_, state=state, **kw)
        loss = y.square().sum() + new[0].sum()
        results.append((y, new, torch.autograd.grad(loss, leaves)))
    (y_ref, s_ref, g_ref), (y, s, gr) = results
    torch.testing.assert_close(y, y_ref)
    for a, b in zip((*s, *gr), (*s_ref, *g_ref)):
        torch.testing.assert_close(a, b)
