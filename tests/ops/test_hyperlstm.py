"""HyperLSTM ops: the hoisted loop equals the reference loop (outputs, state, gradients)."""

from __future__ import annotations

import torch

from mixerlab.ops.hyperlstm import HyperLSTMWeights, hyperlstm_loop, hyperlstm_reference


def test_loop_matches_reference_with_state_and_gradients():
    g = torch.Generator().manual_seed(0)
    B, T, D, H, N, Z = 2, 9, 5, 6, 4, 3
    shapes = {
        "hyper_ih": (4 * N, H + D),
        "hyper_hh": (4 * N, N),
        "hyper_bias": (4 * N,),
        "z_weight": (3 * Z, N),
        "z_bias": (2 * Z,),
        "d_h": (4 * H, Z),
        "d_x": (4 * H, Z),
        "d_b": (4 * H, Z),
        "weight_hh": (4 * H, H),
        "weight_ih": (4 * H, D),
        "bias": (4 * H,),
    }

    def r(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    w = HyperLSTMWeights(**{k: r(*s) for k, s in shapes.items()})
    x, state = r(B, T, D), (r(B, H), r(B, H), r(B, N), r(B, N))
    leaves = [x, *w, *state]
    results = []
    for op in (hyperlstm_reference, hyperlstm_loop):
        out, new = op(x, w, state)
        results.append(
            (out, new, torch.autograd.grad(out.square().sum() + sum(s.sum() for s in new), leaves))
        )
    (o_ref, s_ref, g_ref), (o, s, gr) = results
    torch.testing.assert_close(o, o_ref)
    for a, b in zip((*s, *gr), (*s_ref, *g_ref)):
        torch.testing.assert_close(a, b)
