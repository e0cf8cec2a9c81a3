"""MemMamba's note pool (arXiv:2510.03279): the gathered-window form and the one-step form equal the
per-step loop in float64 (outputs, gradients, final pool), from an empty, a partly filled and a
full carried-in pool; with every token salient the pool read is attention over the last P notes."""

from __future__ import annotations

import math

import pytest
import torch

from mixerlab.ops.note_pool import note_pool_parallel, note_pool_recurrent, note_pool_reference

B, T, H, K = 2, 19, 2, 3


def _inputs(P: int, carried: int, seed: int = 0, rate: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=torch.float64, requires_grad=True)
    notes = torch.randn(B, T, H, K, generator=g, dtype=torch.float64, requires_grad=True)
    salient = torch.rand(B, T, generator=g) < rate
    filled = torch.zeros(B, P, dtype=torch.float64)
    filled[:, P - min(carried, P) :] = 1  # carried notes sit in the newest slots
    pool = (
        torch.randn(B, P, H, K, generator=g, dtype=torch.float64) * filled[..., None, None]
    ).requires_grad_()
    return q, notes, salient, pool, filled


@pytest.mark.parametrize(("P", "carried"), [(1, 0), (4, 0), (4, 2), (4, 4), (30, 3)])
def test_parallel_equals_the_loop_outputs_grads_and_pool(P, carried):
    q, notes, salient, pool, filled = _inputs(P, carried)
    expected = note_pool_reference(q, notes, salient, pool, filled)
    got = note_pool_parallel(q, notes, salient, pool, filled)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(expected[0])
    inputs = (q, notes, pool)
    # with nothing carried in, the loop never reads the (empty) pool: no gradient means zero
    grads_ref = torch.autograd.grad((expected[0] * w).sum() + expected[1].sum(), inputs, allow_unused=True)
    grads = torch.autograd.grad((got[0] * w).sum() + got[1].sum(), inputs, allow_unused=True)
    for a, b, x in zip(grads, grads_ref, inputs):
        zero = torch.zeros_like(x)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b, rtol=1e-10, atol=1e-12)


def test_one_step_at_a_time_equals_the_loop():
    q, notes, salient, pool, filled = _inputs(P=3, carried=1, seed=3, rate=0.6)
    expected = note_pool_reference(q, notes, salient, pool, filled)
    outs, state = [], (pool, filled)
    for t in range(T):
        o, *state = note_pool_recurrent(q[:, t : t + 1], notes[:, t : t + 1], salient[:, t : t + 1], *state)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), expected[0])
    torch.testing.assert_close(state[0], expected[1])
    torch.testing.assert_close(state[1], expected[2])


def test_all_salient_is_attention_over_the_last_p_notes():
    # an independent form: a dense causal mask that keeps the P most recent tokens (a sliding window)
    P = 5
    q, notes, _, pool, filled = _inputs(P, carried=0, seed=4)
    salient = torch.ones(B, T, dtype=torch.bool)
    got, final, final_filled = note_pool_parallel(q, notes, salient, pool, filled)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    keep = (j <= i) & (j > i - P)
    scores = torch.einsum("bthk,bshk->bhts", q, notes) / math.sqrt(K)
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    torch.testing.assert_close(got, torch.einsum("bhts,bshk->bthk", weights, notes))
    torch.testing.assert_close(final, notes[:, -P:])
    assert bool((final_filled == 1).all())


def test_nothing_salient_reads_zero_and_keeps_the_pool():
    q, notes, _, pool, filled = _inputs(P=4, carried=0)
    salient = torch.zeros(B, T, dtype=torch.bool)
    out, final, final_filled = note_pool_parallel(q, notes, salient, pool, filled)
    assert bool((out == 0).all()) and bool((final_filled == 0).all())
    assert torch.isfinite(torch.autograd.grad(out.sum(), q)[0]).all()
