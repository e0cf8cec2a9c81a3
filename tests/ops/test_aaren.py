"""Aaren: blocked prefix scan and the RNN against softmax attention with a fixed query."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.aaren import aaren_recurrent, aaren_reference, aaren_scan

B, H, V = 2, 3, 4


def _empty(dtype=torch.float64):
    return (
        torch.full((B, H), torch.finfo(dtype).min, dtype=dtype),
        torch.zeros(B, H, dtype=dtype),
        torch.zeros(B, H, V, dtype=dtype),
    )


def _data(T=33, scale=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(B, T, H, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    return s, v


def test_reference_is_softmax_attention_over_every_prefix():
    s, v = _data(T=12)
    o, _ = aaren_reference(s, v, *_empty())
    for t in range(12):
        weights = torch.softmax(s[:, : t + 1], dim=1)  # [B, t+1, H]
        expected = torch.einsum("bth,bthv->bhv", weights, v[:, : t + 1])
        torch.testing.assert_close(o[:, t], expected)


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 33, 64])
def test_scan_matches_rnn_outputs_state_and_gradients(chunk_size):
    s, v = _data()
    o_s, st_s = aaren_scan(s, v, *_empty(), chunk_size=chunk_size)
    o_r, st_r = aaren_reference(s, v, *_empty())
    torch.testing.assert_close(o_s, o_r, rtol=1e-10, atol=1e-12)
    for a, b in zip(st_s, st_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(o_s)
    for a, b in zip(torch.autograd.grad(o_s, (s, v), g), torch.autograd.grad(o_r, (s, v), g)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_scan_continues_from_a_state():
    s, v = _data()
    o_full, st_full = aaren_scan(s, v, *_empty(), chunk_size=8)
    o1, st = aaren_scan(s[:, :13], v[:, :13], *_empty(), chunk_size=8)
    o2, st2 = aaren_scan(s[:, 13:], v[:, 13:], *st, chunk_size=8)
    torch.testing.assert_close(torch.cat([o1, o2], 1), o_full)
    o3, st3 = aaren_recurrent(s[:, 13], v[:, 13], *st)
    torch.testing.assert_close(o3, o_full[:, 13])
    for a, b in zip(st2, st_full):
        torch.testing.assert_close(a, b)


def test_large_score_range_stays_finite_in_float32():
    s, v = _data(T=64, scale=300.0, dtype=torch.float32)
    m, u, w = (t.float() for t in _empty(torch.float32))
    o, _ = aaren_scan(s, v, m, u, w, chunk_size=16)
    o.sum().backward()
    assert torch.isfinite(o).all() and torch.isfinite(s.grad).all()
    o64, _ = aaren_reference(s.detach().double(), v.detach().double(), *_empty())
    torch.testing.assert_close(o.double(), o64, rtol=1e-4, atol=1e-5)
