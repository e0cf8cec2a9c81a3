"""TTT ops: the dual form equals per-token gradient descent (outputs, weights, gradients), also
when a call starts inside a mini-batch."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.ttt import ttt_linear_chunk, ttt_linear_reference, ttt_mlp_chunk, ttt_mlp_reference

B, T, H, K, M = 2, 13, 2, 4, 6


def _inputs(mlp: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    qkv = [r(B, T, H, K) for _ in range(3)]
    lr = (0.3 * torch.rand(B, T, H, generator=g, dtype=torch.float64)).requires_grad_()
    ln = [1 + r(H, K, scale=0.1), r(H, K, scale=0.1)]
    shapes = [(B, H, M, K), (B, H, K, M)] if mlp else [(B, H, K, K)]
    weights = [r(*s, scale=0.3) for s in shapes]
    bases = [r(*s, scale=0.3) for s in shapes]
    return qkv, lr, ln, weights, bases


@pytest.mark.parametrize("mlp", [False, True])
@pytest.mark.parametrize("pos", [0, 3])
def test_dual_form_matches_per_token_gradient_descent(mlp, pos):
    qkv, lr, ln, weights, bases = _inputs(mlp)
    reference, dual = (ttt_mlp_reference, ttt_mlp_chunk) if mlp else (ttt_linear_reference, ttt_linear_chunk)
    state = (*weights, *bases, pos)
    leaves = [*qkv, lr, *ln, *weights, *bases]
    results = []
    for op in (reference, dual):
        y, new = op(*qkv, lr, *ln, state, mini_batch_size=5)
        loss = y.square().sum() + sum(w.sum() for w in new[:-1])
        results.append((y, new, torch.autograd.grad(loss, leaves)))
    (y_ref, s_ref, g_ref), (y, s, g) = results
    torch.testing.assert_close(y, y_ref)
    assert s[-1] == s_ref[-1] == (pos + T) % 5
    for a, b in zip(s[:-1], s_ref[:-1]):
        torch.testing.assert_close(a, b)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)
