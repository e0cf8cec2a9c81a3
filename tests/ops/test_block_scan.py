"""The block-diagonal matrix recurrence ``h_t = A_t h_{t-1} + b_t``: fast forms vs the loop."""

from __future__ import annotations

import math

import pytest
import torch

from mixerlab.ops.block_scan import (
    block_scan_chunk,
    block_scan_doubling,
    block_scan_recurrent,
    block_scan_reference,
)
from mixerlab.ops.linear_scan import linear_scan_reference

FAST = [block_scan_chunk, block_scan_doubling]


def _inputs(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(2, T, 3, 4, 4, generator=g, dtype=torch.float64) / 3
    b = torch.randn(2, T, 3, 4, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    return A, b, h0


@pytest.mark.parametrize("fast", FAST)
@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
@pytest.mark.parametrize("with_h0", [False, True])
def test_fast_matches_reference_outputs_and_gradients(fast, chunk_size, with_h0):
    A, b, h0 = _inputs(33)
    leaves = [A.requires_grad_(), b.requires_grad_()] + ([h0.requires_grad_()] if with_h0 else [])
    init = h0 if with_h0 else None
    h_ref, last_ref = block_scan_reference(A, b, init)
    h, last = fast(A, b, init, chunk_size=chunk_size)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-9, atol=1e-10)
    g = torch.randn_like(h_ref)
    for got, want in zip(
        torch.autograd.grad((h * g).sum(), leaves), torch.autograd.grad((h_ref * g).sum(), leaves)
    ):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("fast", [block_scan_reference, *FAST])
def test_rotations_turn_the_initial_state(fast):
    """A_t = rotation by phi, b = 0: h_t is h_{-1} rotated by (t + 1) phi."""
    T, phi = 19, 0.3
    R = torch.tensor([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]], dtype=torch.float64)
    A = R.expand(1, T, 1, 2, 2)
    h0 = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    kwargs = {} if fast is block_scan_reference else {"chunk_size": 4}
    h, _ = fast(A, torch.zeros(1, T, 1, 2, dtype=torch.float64), h0, **kwargs)
    angle = phi * torch.arange(1, T + 1, dtype=torch.float64)
    torch.testing.assert_close(h[0, :, 0], torch.stack([angle.cos(), angle.sin()], dim=-1))


@pytest.mark.parametrize("fast", FAST)
def test_diagonal_blocks_reduce_to_the_elementwise_scan(fast):
    _, b, h0 = _inputs(21)
    d = torch.randn(2, 21, 3, 4, dtype=torch.float64)
    h, _ = fast(torch.diag_embed(d), b, h0, chunk_size=5)
    torch.testing.assert_close(h, linear_scan_reference(d, b, h0)[0])


def test_recurrent_step_is_one_reference_step():
    A, b, h0 = _inputs(1)
    torch.testing.assert_close(block_scan_recurrent(A[:, 0], b[:, 0], h0), block_scan_reference(A, b, h0)[1])


@pytest.mark.parametrize("fast", FAST)
def test_complex_blocks_match_reference_outputs_and_gradients(fast):
    A, b, h0 = _inputs(17)
    A = torch.complex(A, torch.randn_like(A) / 3).requires_grad_()
    b = torch.complex(b, torch.randn_like(b)).requires_grad_()
    h0 = torch.complex(h0, torch.randn_like(h0)).requires_grad_()
    h, _ = fast(A, b, h0, chunk_size=5)
    h_ref, _ = block_scan_reference(A, b, h0)
    torch.testing.assert_close(h, h_ref)
    g = torch.randn_like(h_ref)
    for got, want in zip(
        torch.autograd.grad((h * g.conj()).real.sum(), (A, b, h0)),
        torch.autograd.grad((h_ref * g.conj()).real.sum(), (A, b, h0)),
    ):
        torch.testing.assert_close(got, want)
