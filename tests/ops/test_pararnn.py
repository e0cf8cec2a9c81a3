"""ParaRNN ops: Newton's solve against sequential evaluation (values and implicit-function
gradients) and Newton's prefix-exactness property. Its parallel scan is
``linear_scan_doubling``, tested in tests/ops/test_linear_scan.py."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.pararnn import newton_solve, pararnn_newton, pararnn_reference

B, N = 2, 6


def _inputs(T: int, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(B, T, 3, N, generator=g, dtype=torch.float64) * scale
    A = torch.rand(3, N, generator=g, dtype=torch.float64) * 2 - 1
    h0 = torch.randn(B, N, generator=g, dtype=torch.float64).tanh()
    return pre, A, h0


@pytest.mark.parametrize("T", [1, 33, 200])
def test_newton_matches_sequential_values_and_gradients(T):
    pre, A, h0 = (t.requires_grad_() for t in _inputs(T))
    h_ref = pararnn_reference(pre, A, h0)
    h, iters = pararnn_newton(pre, A, h0)
    assert 1 <= iters <= max(T, 1)
    torch.testing.assert_close(h, h_ref, rtol=1e-7, atol=1e-10)
    g = torch.randn_like(h)
    for a, b, name in zip(
        torch.autograd.grad(h, (pre, A, h0), g),
        torch.autograd.grad(h_ref, (pre, A, h0), g),
        ["pre", "A", "h0"],
    ):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10, msg=lambda m, name=name: f"d{name}: {m}")


def test_newton_converges_in_far_fewer_steps_than_T():
    pre, A, h0 = _inputs(512)
    _, _, iters = newton_solve(pre, A, h0)
    assert iters <= 12, f"Newton took {iters} iterations for T=512"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_each_newton_step_makes_at_least_one_more_position_exact(k):
    # The initial guess is exact at position 0; after k steps positions 0..k are exact whatever
    # happens further along (the property that bounds the iterations by T).
    pre, A, h0 = _inputs(40, scale=4.0)
    h_ref = pararnn_reference(pre, A, h0)
    h, _, iters = newton_solve(pre, A, h0, tol=0.0, max_iters=k)
    assert iters == k
    torch.testing.assert_close(h[:, : k + 1], h_ref[:, : k + 1], rtol=1e-12, atol=1e-12)


def test_non_finite_update_is_a_clear_error():
    pre, A, h0 = _inputs(8)
    pre[0, 3, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="mode='reference'"):
        newton_solve(pre, A, h0)


def test_compiled_newton_is_one_graph_that_stops_and_fails_as_eager_does():
    # under torch.compile the adaptive stop is a while_loop on the device: same iterations, same
    # solution, and a non-finite update still fails (an on-device assertion, a RuntimeError)
    torch._dynamo.reset()
    solve = torch.compile(newton_solve, backend="aot_eager", fullgraph=True)
    pre, A, h0 = _inputs(40, scale=2.0)
    for options in ({}, {"tol": 0.0, "max_iters": 2}):
        h, jac, iters = newton_solve(pre, A, h0, **options)
        h_c, jac_c, iters_c = solve(pre, A, h0, **options)
        assert int(iters_c) == iters and iters > 1
        torch.testing.assert_close(h_c, h, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(jac_c, jac, rtol=1e-12, atol=1e-12)
    pre[0, 3, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="mode='reference'"):
        solve(pre, A, h0, tol=0.0, max_iters=2)
