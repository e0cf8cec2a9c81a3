"""AHN ops: chunked decayed memory and the windowed mixer against their per-token loops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.ahn import (
    ahn_chunk,
    ahn_recurrent,
    ahn_reference,
    decayed_memory_chunk,
    decayed_memory_reference,
)
from mixerlab.ops.attention import attention_reference

B, H, K = 2, 2, 3


def _seq(L, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = r(B, L, H, K), r(B, L, H, K), r(B, L, H, K)
    log_a = -F.softplus(r(B, L, H))
    M0 = r(B, H, K, K)
    return q, k, v, log_a, M0


@pytest.mark.parametrize("chunk_size", [1, 4, 8, 40])
def test_decayed_memory_chunk_matches_loop(chunk_size):
    q, k, v, log_a, M0 = _seq(33)
    for t in (q, k, v, log_a, M0):
        t.requires_grad_()
    o_c, M_c = decayed_memory_chunk(q, k, v, log_a, M0, chunk_size=chunk_size)
    o_r, M_r = decayed_memory_reference(q, k, v, log_a, M0)
    torch.testing.assert_close(o_c, o_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(M_c, M_r, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(o_c)
    inputs = (q, k, v, log_a, M0)
    for a, b in zip(torch.autograd.grad(o_c, inputs, g), torch.autograd.grad(o_r, inputs, g)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(("past", "T", "window"), [(0, 33, 5), (4, 20, 5), (2, 3, 5), (0, 4, 8), (6, 1, 7)])
def test_ahn_chunk_and_step_match_reference(past, T, window):
    q, k, v, log_a, M0 = _seq(past + T, seed=1)
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    args = (q[:, past:], k, v, qn[:, past:], kn, log_a, M0)
    o_r, M_r = ahn_reference(*args, window=window)
    o_c, M_c = ahn_chunk(*args, window=window, chunk_size=4)
    torch.testing.assert_close(o_c, o_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(M_c, M_r, rtol=1e-10, atol=1e-12)
    if T == 1:
        o_s, M_s = ahn_recurrent(*args, window=window)
        torch.testing.assert_close(o_s, o_r)
        torch.testing.assert_close(M_s, M_r)


def test_with_an_empty_memory_and_no_writes_it_is_sliding_window_attention():
    q, k, v, log_a, M0 = _seq(20, seed=2)
    zeros = torch.zeros_like(k)
    o, M = ahn_chunk(q, k, v, q, zeros, log_a, torch.zeros_like(M0), window=6, chunk_size=4)
    torch.testing.assert_close(o, attention_reference(q, k, v, window=6))
    assert M.abs().max() == 0


def test_memory_holds_exactly_the_evicted_tokens():
    # Without decay (a = 1) the memory after a call is the sum of k v^T over positions 0 .. L-W.
    q, k, v, _, M0 = _seq(15, seed=3)
    log_a = torch.zeros(B, 15, H, dtype=torch.float64)
    _, M = ahn_chunk(q, k, v, q, k, log_a, torch.zeros_like(M0), window=6, chunk_size=4)
    expected = torch.einsum("bshk,bshv->bhkv", k[:, : 15 - 6 + 1], v[:, : 15 - 6 + 1])
    torch.testing.assert_close(M, expected)
