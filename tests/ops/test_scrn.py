"""SCRN ops: the scanned form equals the per-step reference (outputs, final state, gradients)."""

from __future__ import annotations

import torch

from mixerlab.ops.scrn import scrn_recurrent, scrn_reference, scrn_scan


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T, S, H = 2, 33, 5, 7

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    return r(B, T, S), r(B, T, H), r(H, S), r(H, H), (r(B, S), r(B, H))


def test_scan_matches_reference_with_state_and_gradients():
    bx, ax, P, R, state = _inputs()
    leaves = [bx, ax, P, R, *state]
    out_ref = scrn_reference(bx, ax, P, R, 0.9, state=state)
    out_scan = scrn_scan(bx, ax, P, R, 0.9, state=state, chunk_size=8)
    for a, b in zip((out_scan[0], out_scan[1], *out_scan[2]), (out_ref[0], out_ref[1], *out_ref[2])):
        torch.testing.assert_close(a, b)
    loss_ref = out_ref[0].sum() + out_ref[1].square().sum()
    loss_scan = out_scan[0].sum() + out_scan[1].square().sum()
    for g_ref, g_scan in zip(torch.autograd.grad(loss_ref, leaves), torch.autograd.grad(loss_scan, leaves)):
        torch.testing.assert_close(g_scan, g_ref)


def test_recurrent_step_is_the_references_first_step():
    bx, ax, P, R, state = _inputs(1)
    s_seq, h_seq, _ = scrn_reference(bx[:, :1], ax[:, :1], P, R, 0.5, state=state)
    s, h = scrn_recurrent(bx[:, 0], ax[:, 0], P, R, 0.5, state)
    torch.testing.assert_close(s, s_seq[:, 0])
    torch.testing.assert_close(h, h_seq[:, 0])
