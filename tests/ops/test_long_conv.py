"""Causal long convolution: FFT form and one-step form against the per-step sums."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.long_conv import (
    long_conv_fft,
    long_conv_recurrent,
    long_conv_reference,
    long_conv_toeplitz,
)


def _data(T=33, C=5, L=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(2, T, C, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(L, C, generator=g, dtype=torch.float64, requires_grad=True)
    return u, k


@pytest.mark.parametrize("T", [1, 2, 17, 33])
def test_fft_matches_reference_outputs_and_gradients(T):
    u, k = _data(T=T)
    g = torch.randn(2, T, 5, dtype=torch.float64)
    y_fft, y_ref = long_conv_fft(u, k), long_conv_reference(u, k)
    torch.testing.assert_close(y_fft, y_ref, rtol=1e-9, atol=1e-10)
    grads_fft = torch.autograd.grad(y_fft, (u, k), g)
    grads_ref = torch.autograd.grad(y_ref, (u, k), g)
    for a, b in zip(grads_fft, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("start", [0, 1, 20, 32])
def test_start_returns_the_tail_of_the_full_output(start):
    u, k = _data()
    full = long_conv_reference(u, k)
    torch.testing.assert_close(long_conv_fft(u, k, start=start), full[:, start:], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(long_conv_reference(u, k, start=start), full[:, start:])


def test_recurrent_step_is_the_last_output():
    u, k = _data(T=12)
    for t in range(1, 13):
        step = long_conv_recurrent(u[:, :t], k)
        torch.testing.assert_close(step, long_conv_reference(u[:, :t], k)[:, -1])


def test_known_filters_identity_and_delay():
    u, _ = _data()
    identity = torch.zeros(33, 5, dtype=torch.float64)
    identity[0] = 1
    torch.testing.assert_close(long_conv_fft(u, identity), u, rtol=1e-9, atol=1e-12)
    delay = torch.zeros(33, 5, dtype=torch.float64)
    delay[3] = 2.0  # y[t] = 2 u[t-3]
    expected = torch.cat([torch.zeros_like(u[:, :3]), 2 * u[:, :-3]], dim=1)
    torch.testing.assert_close(long_conv_fft(u, delay), expected, rtol=1e-9, atol=1e-12)


def test_causal_future_inputs_do_not_leak():
    u, k = _data()
    u2 = u.detach().clone()
    u2[:, 20:] += 100.0
    torch.testing.assert_close(
        long_conv_fft(u2, k)[:, :20], long_conv_fft(u, k)[:, :20], rtol=1e-9, atol=1e-9
    )


def test_reference_is_the_causal_convolution_of_conv1d():
    # an independent statement of the same sum: conv1d cross-correlates, so the filter is flipped
    # and the input left-padded by T-1 zeros
    u, k = _data(T=17, L=20)
    T, C = u.shape[1], u.shape[2]
    weight = k[:T].flip(0).T[:, None, :]  # [C, 1, T]
    padded = torch.nn.functional.pad(u.transpose(1, 2), (T - 1, 0))
    expected = torch.nn.functional.conv1d(padded, weight, groups=C).transpose(1, 2)
    torch.testing.assert_close(long_conv_reference(u, k), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("T", "start"), [(1, 0), (2, 1), (17, 0), (33, 5), (33, 32)])
def test_toeplitz_matches_reference_outputs_and_gradients(T, start):
    u, k = _data(T=T)
    g = torch.randn(2, T - start, 5, dtype=torch.float64)
    y_toe, y_ref = long_conv_toeplitz(u, k, start=start), long_conv_reference(u, k, start=start)
    torch.testing.assert_close(y_toe, y_ref, rtol=1e-9, atol=1e-10)
    grads_toe = torch.autograd.grad(y_toe, (u, k), g)
    grads_ref = torch.autograd.grad(y_ref, (u, k), g)
    for a, b in zip(grads_toe, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_toeplitz_is_causal_and_reads_only_the_first_t_taps():
    u, k = _data()
    u2, k2 = u.detach().clone(), k.detach().clone()
    u2[:, 20:] += 100.0
    k2[33:] += 100.0  # taps beyond the sequence are never used
    y, y2 = long_conv_toeplitz(u, k), long_conv_toeplitz(u2, k2)
    torch.testing.assert_close(y2[:, :20], y[:, :20])
    assert not torch.allclose(y2[:, 20:], y[:, 20:])
