"""Diagonal SSM: convolution form (with initial and final states) against the recurrence."""

from __future__ import annotations

import math

import pytest
import torch

from mixerlab.ops.diag_ssm import diag_ssm_conv, diag_ssm_kernel, diag_ssm_recurrent, diag_ssm_reference

H, E, M = 3, 4, 2


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.complex(
        -0.5 * torch.ones(H, M, dtype=torch.float64), math.pi * torch.arange(M).double().repeat(H, 1)
    )
    dt = torch.exp(torch.empty(H, dtype=torch.float64).uniform_(math.log(1e-2), math.log(0.5), generator=g))
    dtA = (dt[:, None] * A).requires_grad_()
    dB = (torch.exp(dtA.detach()) - 1) / A
    C = torch.complex(
        torch.randn(H, M, generator=g, dtype=torch.float64),
        torch.randn(H, M, generator=g, dtype=torch.float64),
    )
    D = torch.randn(H, generator=g, dtype=torch.float64)
    return dtA, dB, C, D


def _x(T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, T, H, E, generator=g, dtype=torch.float64, requires_grad=True)


def _h0(seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(*torch.randn(2, 2, H, E, M, generator=g, dtype=torch.float64))


# The conv form splits t = c J + j with J = ceil(sqrt(T)): lengths on (16) and off a square
# exercise the padded last block of both the kernel and the final-state sum.
@pytest.mark.parametrize("T", [1, 2, 9, 16, 33])
@pytest.mark.parametrize("with_state", [False, True])
def test_conv_matches_recurrence(T, with_state):
    dtA, dB, C, D = _params()
    x = _x(T)
    h0 = _h0() if with_state else None
    y_c, h_c = diag_ssm_conv(x, dtA, dB, C, D, h0)
    y_r, h_r = diag_ssm_reference(x, dtA, dB, C, D, h0)
    torch.testing.assert_close(y_c, y_r, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h_c, h_r, rtol=1e-9, atol=1e-10)
    g = torch.randn_like(y_c)
    gc = torch.autograd.grad(y_c, (x, dtA), g)
    gr = torch.autograd.grad(y_r, (x, dtA), g)
    for a, b in zip(gc, gr):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_kernel_closed_form_single_mode():
    dtA, dB, C, _ = _params()
    K = diag_ssm_kernel(dtA.detach(), dB, C, 6)
    for l in range(6):
        expected = 2 * (C * dB * torch.exp(dtA.detach()) ** l).sum(-1).real
        torch.testing.assert_close(K[l], expected)


@pytest.mark.parametrize("T", [1, 16, 50])
def test_kernel_is_the_impulse_response_of_the_recurrence(T):
    dtA, dB, C, _ = _params()
    impulse = torch.zeros(1, T, H, 1, dtype=torch.float64)
    impulse[:, 0] = 1.0
    response, _ = diag_ssm_reference(impulse, dtA.detach(), dB, C, torch.zeros(H, dtype=torch.float64))
    torch.testing.assert_close(diag_ssm_kernel(dtA.detach(), dB, C, T), response[0, :, :, 0])


def test_conv_without_skip_and_empty_sequence():
    dtA, dB, C, D = _params()
    dtA, x, h0 = dtA.detach(), _x(12).detach(), _h0()
    y, h = diag_ssm_conv(x, dtA, dB, C, None, h0)
    y_ref, h_ref = diag_ssm_reference(x, dtA, dB, C, torch.zeros_like(D), h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    y0, h_0 = diag_ssm_conv(x[:, :0], dtA, dB, C, D, h0)
    assert y0.shape == (2, 0, H, E)
    torch.testing.assert_close(h_0, h0)


def test_split_equals_one_call_and_steps():
    dtA, dB, C, D = _params()
    x = _x(20).detach()
    y, h = diag_ssm_conv(x, dtA.detach(), dB, C, D)
    y1, h1 = diag_ssm_conv(x[:, :7], dtA.detach(), dB, C, D)
    y2, h2 = diag_ssm_conv(x[:, 7:], dtA.detach(), dB, C, D, h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h2, h, rtol=1e-9, atol=1e-10)
    ys_step, hs = [], h1
    for t in range(7, 20):
        yt, hs = diag_ssm_recurrent(x[:, t], dtA.detach(), dB, C, D, hs)
        ys_step.append(yt)
    torch.testing.assert_close(torch.stack(ys_step, 1), y[:, 7:], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_outer_chunk_matches_recurrence_over_outer_products(chunk_size, with_state):
    # H3's use: the SSM runs on every channel k[i] v[j] of a head and is read out by q
    from einops import rearrange

    from mixerlab.ops.diag_ssm import diag_ssm_outer_chunk

    K, T = 3, 33
    dtA, dB, C, D = _params()
    g = torch.Generator().manual_seed(5)
    q, k, v = (
        torch.randn(2, T, H, K, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)
    )
    h0 = (
        torch.complex(*torch.randn(2, 2, H, K * K, M, generator=g, dtype=torch.float64))
        if with_state
        else None
    )
    o, h = diag_ssm_outer_chunk(q, k, v, dtA, dB, C, D, h0, chunk_size=chunk_size)
    kv = rearrange(k[..., :, None] * v[..., None, :], "b t h i j -> b t h (i j)")
    s, h_ref = diag_ssm_reference(kv, dtA, dB, C, D, h0)
    o_ref = torch.einsum("bthi,bthij->bthj", q, rearrange(s, "b t h (i j) -> b t h i j", i=K))
    torch.testing.assert_close(o, o_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    gh = torch.randn_like(h)
    loss, loss_ref = ((o * o).sum() + (h * gh).real.sum(), (o_ref * o_ref).sum() + (h_ref * gh).real.sum())
    grads = torch.autograd.grad(loss, (q, k, v, dtA))
    grads_ref = torch.autograd.grad(loss_ref, (q, k, v, dtA))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
