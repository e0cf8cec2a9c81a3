"""The elementwise linear recurrence ``h_t = a_t h_{t-1} + b_t``: fast forms vs the loop, closed forms."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.linear_scan import (
    linear_scan_chunk,
    linear_scan_doubling,
    linear_scan_recurrent,
    linear_scan_reference,
)

FAST = [linear_scan_chunk, linear_scan_doubling]


def _inputs(T: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, T, 3, 4, generator=g, dtype=torch.float64)  # negative entries included
    b = torch.randn(2, T, 3, 4, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    if dtype.is_complex:
        a = torch.complex(a, torch.randn(a.shape, generator=g, dtype=torch.float64)) * 0.7
        b = torch.complex(b, torch.randn(b.shape, generator=g, dtype=torch.float64))
        h0 = torch.complex(h0, torch.randn(h0.shape, generator=g, dtype=torch.float64))
    a[:, ::5] = 0  # zeros must not break anything (no logs, no division)
    return a, b, h0


@pytest.mark.parametrize("fast", FAST)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
@pytest.mark.parametrize("with_h0", [False, True])
def test_fast_matches_reference_outputs_and_gradients(fast, dtype, chunk_size, with_h0):
    a, b, h0 = _inputs(33, dtype)
    leaves = [a.requires_grad_(), b.requires_grad_()] + ([h0.requires_grad_()] if with_h0 else [])
    init = h0 if with_h0 else None
    h_ref, last_ref = linear_scan_reference(a, b, init)
    h, last = fast(a, b, init, chunk_size=chunk_size)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-9, atol=1e-10)
    g = torch.randn_like(h_ref)
    grads_ref = torch.autograd.grad((h_ref * g.conj()).real.sum(), leaves)
    grads = torch.autograd.grad((h * g.conj()).real.sum(), leaves)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("fast", FAST)
@pytest.mark.parametrize("real_decay", [False, True])
def test_broadcast_time_invariant_decay_outputs_and_gradients(fast, real_decay):
    """A decay shared over batch and time (``a: [S]``), real or complex, broadcasts like the loop."""
    _, b, h0 = _inputs(20, torch.complex128)
    a = torch.rand(3, 4, dtype=torch.float64)
    if not real_decay:
        a = torch.polar(a, torch.rand(3, 4, dtype=torch.float64))
    leaves = [a.requires_grad_(), b.requires_grad_(), h0.requires_grad_()]
    h, last = fast(a, b, h0, chunk_size=6)
    h_ref, last_ref = linear_scan_reference(a, b, h0)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(last, last_ref)
    g = torch.randn_like(h_ref)
    for got, want in zip(
        torch.autograd.grad((h * g.conj()).real.sum() + last.abs().sum(), leaves),
        torch.autograd.grad((h_ref * g.conj()).real.sum() + last_ref.abs().sum(), leaves),
    ):
        assert got.dtype == want.dtype and got.shape == want.shape
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("fast", [linear_scan_reference, *FAST])
def test_constant_decay_has_the_geometric_closed_form(fast):
    """a_t = q, b_t = 1, h_{-1} = 0 gives h_t = (1 - q^(t+1)) / (1 - q)."""
    T, q = 25, torch.tensor([0.5, -0.9, 0.3 + 0.6j], dtype=torch.complex128)
    a = q.expand(1, T, 3)
    b = torch.ones(1, T, 3, dtype=torch.complex128)
    t = torch.arange(T, dtype=torch.float64)[:, None]
    expected = (1 - q ** (t + 1)) / (1 - q)
    kwargs = {} if fast is linear_scan_reference else {"chunk_size": 4}
    h, _ = fast(a, b, **kwargs)
    torch.testing.assert_close(h[0], expected)


@pytest.mark.parametrize("fast", FAST)
def test_split_sequence_continues_from_the_last_state(fast):
    a, b, h0 = _inputs(30, torch.complex128)
    h_full, last_full = fast(a, b, h0, chunk_size=4)
    h1, mid = fast(a[:, :11], b[:, :11], h0, chunk_size=4)
    h2, last = fast(a[:, 11:], b[:, 11:], mid, chunk_size=4)
    torch.testing.assert_close(torch.cat([h1, h2], dim=1), h_full)
    torch.testing.assert_close(last, last_full)


def test_recurrent_step_is_one_reference_step():
    a, b, h0 = _inputs(1, torch.complex128)
    torch.testing.assert_close(
        linear_scan_recurrent(a[:, 0], b[:, 0], h0), linear_scan_reference(a, b, h0)[1]
    )


@pytest.mark.parametrize("fast", FAST)
def test_empty_sequence_returns_the_initial_state(fast):
    a, b, h0 = _inputs(0, torch.float64)
    h, last = fast(a, b, h0)
    assert h.shape == (2, 0, 3, 4)
    torch.testing.assert_close(last, h0)


def test_doubling_keeps_an_overflowed_product_away_from_zeros():
    """A running product may overflow while the state stays finite (ParaRNN's Newton steps): with
    ``b_0 = 0`` the product ``a_1 a_0`` never reaches ``h``, and the scan must not form ``inf * 0``."""
    a = torch.tensor([1e200, 1e200, 1e-10, 1.0, 0.5, 2.0, 1.0], dtype=torch.float64)[None, :, None]
    b = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 3.0], dtype=torch.float64)[None, :, None]
    h, _ = linear_scan_doubling(a, b, chunk_size=8)
    h_ref, _ = linear_scan_reference(a, b)
    assert torch.isfinite(h_ref).all()
    torch.testing.assert_close(h, h_ref)
