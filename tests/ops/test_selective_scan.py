"""Selective scan (Mamba S6): chunked log-space scan and one step against the per-token loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.selective_scan import (
    selective_scan_chunk,
    selective_scan_recurrent,
    selective_scan_reference,
)


def _inputs(T: int = 21, batch: int = 2, E: int = 5, N: int = 3, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, E, generator=g, dtype=dtype)
    # dt spread over several orders of magnitude, as after training
    dt = F.softplus(3 * torch.randn(batch, T, E, generator=g, dtype=dtype))
    A = -torch.exp(torch.randn(E, N, generator=g, dtype=dtype))
    B = torch.randn(batch, T, N, generator=g, dtype=dtype)
    C = torch.randn(batch, T, N, generator=g, dtype=dtype)
    h0 = torch.randn(batch, E, N, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, dt, A, B, C, h0)]


@pytest.mark.parametrize(
    ("chunk_size", "block_size", "checkpoint"),
    [(1, 8, False), (4, 3, True), (8, 8, False), (13, 4, True), (64, 8, True), (64, 1, False)],
)
@pytest.mark.parametrize("negative", [False, True])
def test_chunk_matches_reference(chunk_size, block_size, negative, checkpoint):
    x, dt, A, B, C, h0 = inputs = _inputs()
    y, h = selective_scan_chunk(
        x,
        dt,
        A,
        B,
        C,
        state=h0,
        negative_eigenvalues=negative,
        chunk_size=chunk_size,
        block_size=block_size,
        checkpoint=checkpoint,
    )
    y_ref, h_ref = selective_scan_reference(x, dt, A, B, C, state=h0, negative_eigenvalues=negative)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    gy, gh = torch.randn_like(y), torch.randn_like(h)
    grads = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (h_ref * gh).sum(), inputs)
    for name, a, b in zip(["x", "dt", "A", "B", "C", "h0"], grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


def test_zero_state_equals_no_state_and_steps_equal_one_call():
    x, dt, A, B, C, _ = _inputs(T=7)
    y, h = selective_scan_chunk(x, dt, A, B, C, chunk_size=3)
    y0, h0 = selective_scan_chunk(x, dt, A, B, C, state=torch.zeros_like(h), chunk_size=3)
    torch.testing.assert_close(y0, y)
    state, ys = None, []
    for t in range(7):
        part = slice(t, t + 1)
        yt, state = selective_scan_recurrent(x[:, part], dt[:, part], A, B[:, part], C[:, part], state=state)
        ys.append(yt)
    torch.testing.assert_close(torch.cat(ys, dim=1), y)
    torch.testing.assert_close(state, h)


@pytest.mark.parametrize("negative", [False, True])
def test_closed_form_geometric_series(negative):
    # constant dt, B, C, x: h_t = dt*B*x * (1 - a^t) / (1 - a) with a the (mapped) transition
    T, dt_value, A_value = 9, 0.5, -2.0
    x = torch.ones(1, T, 1, dtype=torch.float64)
    dt = torch.full_like(x, dt_value)
    A = torch.full((1, 1), A_value, dtype=torch.float64)
    B = C = torch.ones(1, T, 1, dtype=torch.float64)
    a = torch.exp(torch.tensor(dt_value * A_value, dtype=torch.float64))
    a = 2 * a - 1 if negative else a
    t = torch.arange(1, T + 1, dtype=torch.float64)
    expected = dt_value * (1 - a**t) / (1 - a)
    y, _ = selective_scan_chunk(x, dt, A, B, C, negative_eigenvalues=negative, chunk_size=4)
    torch.testing.assert_close(y[0, :, 0], expected)
    if negative:
        assert a < 0  # the mapped transition really flips sign here


def test_float32_large_steps_stay_finite_and_as_accurate_as_the_loop():
    # dt*A down to about -200 per step: a naive exp(-cumsum) rescaling would overflow in float32
    x, dt, A, B, C, h0 = (t.detach().float() for t in _inputs(T=64, seed=3))
    dt = dt * 20
    for negative in (False, True):
        y, h = selective_scan_chunk(x, dt, A, B, C, state=h0, chunk_size=32, negative_eigenvalues=negative)
        assert torch.isfinite(y).all() and torch.isfinite(h).all()
        y32, _ = selective_scan_reference(x, dt, A, B, C, state=h0, negative_eigenvalues=negative)
        y64, _ = selective_scan_reference(
            *(t.double() for t in (x, dt, A, B, C)), state=h0.double(), negative_eigenvalues=negative
        )
        # log-space bookkeeping costs about chunk * |log a| * eps of relative precision (see scan.py)
        scale = y64.abs().max()
        assert (y.double() - y64).abs().max() <= 1e-4 * scale
        assert (y32.double() - y64).abs().max() <= 1e-4 * scale  # the bar is one the loop also meets


def test_block_size_that_could_overflow_float32_is_refused():
    x, dt, A, B, C, _ = (t.detach().float() for t in _inputs(T=4))
    with pytest.raises(ValueError, match="block_size=9"):
        selective_scan_chunk(x, dt, A, B, C, block_size=9)


@pytest.mark.parametrize("dt_scale", [0.01, 30.0])
def test_both_decay_paths_match_reference(dt_scale):
    # small steps: log a = dt A never reaches the floor and the scan takes the separable path
    # A * cumsum(dt); huge steps: some dt A fall below the floor and the per-step path is used
    x, dt, A, B, C, h0 = _inputs(T=19)
    dt_s = (dt.detach() * dt_scale).requires_grad_()
    inputs = (x, dt_s, A, B, C, h0)
    y, h = selective_scan_chunk(x, dt_s, A, B, C, state=h0, chunk_size=8, block_size=4)
    y_ref, h_ref = selective_scan_reference(x, dt_s, A, B, C, state=h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    grads = torch.autograd.grad(y.square().sum() + h.sum(), inputs)
    grads_ref = torch.autograd.grad(y_ref.square().sum() + h_ref.sum(), inputs)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("negative", [False, True])
def test_float32_gradients_stay_finite_with_steps_at_the_floor(negative):
    # Found in training (mamba, lr 1e-2): with dt A below the floor in a block of 8 the rescaling
    # factor reaches exp(-80), and autograd's derivative of w / grow, -w / grow^2, overflowed to
    # inf (then NaN) although every value of the forward pass was finite.
    x, dt, A, B, C, h0 = (t.detach().float() for t in _inputs(T=32, seed=5))
    dt = (dt * 40).requires_grad_()
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C, h0)]
    y, h = selective_scan_chunk(x, dt, A, B, C, state=h0, negative_eigenvalues=negative, chunk_size=16)
    assert (dt * A.abs().amax()).amax() > 20  # some steps are at the floor: the general path
    gy = torch.randn_like(y)
    grads = torch.autograd.grad((y * gy).sum() + h.sum(), inputs)
    wide = [t.detach().double().requires_grad_() for t in inputs]
    y64, h64 = selective_scan_reference(*wide[:5], state=wide[5], negative_eigenvalues=negative)
    grads64 = torch.autograd.grad((y64 * gy.double()).sum() + h64.sum(), wide)
    for name, g, g64 in zip(["x", "dt", "A", "B", "C", "h0"], grads, grads64):
        assert torch.isfinite(g).all(), f"grad {name} is not finite"
        assert (g.double() - g64).abs().max() <= 1e-3 * (g64.abs().max() + 1), f"grad {name}"
