"""karat: a learnable score function replaces softmax; rows are l1-normalised, hidden keys weigh 0."""

from __future__ import annotations

import math

import torch

from mixerlab.ops.karat import karat_parallel, karat_reference


def _inputs(T: int = 7, H: int = 2, K: int = 4):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, T, H, K, generator=g, dtype=torch.float64)
    k = torch.randn(1, T, H, K, generator=g, dtype=torch.float64)
    v = torch.eye(T, dtype=torch.float64)[None, :, None, :].expand(1, T, H, T)  # outputs are the weights
    return q, k, v


def test_weights_are_the_learned_function_of_the_scores_l1_normalised():
    q, k, v = _inputs()
    coefficients = torch.randn(2, 6, dtype=torch.float64)
    bias = torch.tensor([0.5, -0.2], dtype=torch.float64)
    w = karat_parallel(q, k, v, coefficients, bias, eps=1e-30)  # [1, T, H, T]
    t, h = 5, 1
    s = (q[0, t, h] @ k[0, : t + 1, h].T) / math.sqrt(4)
    j = torch.arange(1, 4, dtype=torch.float64)
    phi = torch.cat([torch.cos(s[:, None] * j), torch.sin(s[:, None] * j)], -1) @ coefficients[h] + bias[h]
    torch.testing.assert_close(w[0, t, h, : t + 1], phi / phi.abs().sum())
    assert (w[0, t, h, t + 1 :] == 0).all()  # causal: future keys weigh nothing
    torch.testing.assert_close(w.abs().sum(-1), torch.ones(1, 7, 2, dtype=torch.float64))


def test_constant_function_is_a_causal_mean_and_scores_matter_otherwise():
    q, k, v = _inputs()
    zero = torch.zeros(2, 6, dtype=torch.float64)
    w = karat_reference(q, k, v, zero, torch.ones(2, dtype=torch.float64), eps=1e-30)
    expected = torch.tril(torch.ones(7, 7, dtype=torch.float64)) / torch.arange(1, 8)[:, None]
    torch.testing.assert_close(w[0, :, 0], expected)
    w2 = karat_reference(q, k, v, torch.randn(2, 6, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    assert not torch.allclose(w2[0, :, 0], expected)
