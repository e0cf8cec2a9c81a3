"""Stick-breaking attention op: the matrix form against the per-query loop and the products written out."""

from __future__ import annotations

import torch

from mixerlab.ops.stick_breaking import stick_breaking_parallel, stick_breaking_reference

B, H, K, V = 2, 2, 4, 3


def _inputs(Tq: int, Tk: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, H, K, generator=g, dtype=torch.float64)
    k = torch.randn(B, Tk, H, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, Tk, H, V, generator=g, dtype=torch.float64)
    return q, k, v


def test_parallel_matches_reference_with_a_cached_prefix_and_gradients():
    for Tq, Tk in ((17, 17), (5, 17), (1, 9)):
        tensors = [t.requires_grad_() for t in _inputs(Tq, Tk)]
        o = stick_breaking_parallel(*tensors)
        o_ref = stick_breaking_reference(*tensors)
        torch.testing.assert_close(o, o_ref)
        g = torch.randn_like(o)
        for a, b in zip(torch.autograd.grad(o, tensors, g), torch.autograd.grad(o_ref, tensors, g)):
            torch.testing.assert_close(a, b)


def test_weights_are_the_stick_breaking_products():
    """Weights (values = identity) against ``beta_ij prod_{j<k<=i} (1 - beta_ik)`` in plain products."""
    T = 6
    q, k, _ = _inputs(T, T)
    v = torch.eye(T, dtype=torch.float64)[None, :, None, :].expand(B, T, H, T)
    A = stick_breaking_parallel(q, k, v)  # [B, T, H, T]: row i = weights of query i
    beta = torch.sigmoid(torch.einsum("bihk,bjhk->bhij", q, k) / K**0.5)
    for i in range(T):
        for j in range(T):
            expected = beta[:, :, i, j] * torch.prod(1 - beta[:, :, i, j + 1 : i + 1], dim=-1)
            expected = expected if j <= i else torch.zeros_like(expected)
            torch.testing.assert_close(A[:, i, :, j], expected)
    total = A.sum(-1)
    assert (total <= 1 + 1e-12).all() and (total > 0).all()  # at most the whole stick
