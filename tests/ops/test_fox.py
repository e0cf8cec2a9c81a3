"""Forgetting attention op: the matrix form against the per-query loop; an open gate is softmax attention."""

from __future__ import annotations

import torch

from mixerlab.ops.attention import attention_reference
from mixerlab.ops.fox import fox_parallel, fox_reference

B, H, K, V = 2, 2, 4, 3


def _inputs(Tq: int, Tk: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, H, K, generator=g, dtype=torch.float64)
    k = torch.randn(B, Tk, H, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, Tk, H, V, generator=g, dtype=torch.float64)
    log_f = torch.nn.functional.logsigmoid(2 * torch.randn(B, Tk, H, generator=g, dtype=torch.float64))
    return q, k, v, log_f


def test_parallel_matches_reference_with_a_cached_prefix_and_gradients():
    for Tq, Tk in ((17, 17), (5, 17), (1, 9)):
        tensors = [t.requires_grad_() for t in _inputs(Tq, Tk)]
        o = fox_parallel(*tensors)
        o_ref = fox_reference(*tensors)
        torch.testing.assert_close(o, o_ref)
        g = torch.randn_like(o)
        for a, b in zip(torch.autograd.grad(o, tensors, g), torch.autograd.grad(o_ref, tensors, g)):
            torch.testing.assert_close(a, b)


def test_open_gate_is_softmax_attention():
    q, k, v, _ = _inputs(7, 11)
    zero = torch.zeros(B, 11, H, dtype=torch.float64)
    torch.testing.assert_close(fox_parallel(q, k, v, zero), attention_reference(q, k, v))


def test_bias_is_the_sum_of_the_gates_between_key_and_query():
    """With zero queries the weights are ``softmax_j(D_ij)``: a gate of ``f`` at every step gives
    weights proportional to ``f^(i-j)``."""
    Tk, f = 6, 0.5
    q = torch.zeros(1, Tk, 1, K, dtype=torch.float64)
    k = torch.randn(1, Tk, 1, K, dtype=torch.float64)
    v = torch.eye(Tk, dtype=torch.float64)[None, :, None, :]  # output row = the weights
    log_f = torch.full((1, Tk, 1), torch.tensor(f).log().item(), dtype=torch.float64)
    w = fox_parallel(q, k, v, log_f)[0, -1, 0]
    expected = f ** torch.arange(Tk - 1, -1, -1, dtype=torch.float64)
    torch.testing.assert_close(w, expected / expected.sum())
