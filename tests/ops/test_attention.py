"""The attention ops: fused/blocked forms against the per-query reference, with caches and GQA."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.attention import attention_local_chunk, attention_parallel, attention_reference


def qkv(Tq, Tk, H=4, G=2, K=8, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, H, K, generator=g, dtype=torch.float64)
    k = torch.randn(B, Tk, G, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, Tk, G, K, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize(("Tq", "Tk"), [(33, 33), (1, 20), (7, 19), (40, 43)])
@pytest.mark.parametrize("window", [None, 1, 5, 16])
def test_parallel_matches_reference(Tq, Tk, window):
    q, k, v = qkv(Tq, Tk)
    torch.testing.assert_close(
        attention_parallel(q, k, v, window=window), attention_reference(q, k, v, window=window)
    )


@pytest.mark.parametrize(("Tq", "Tk"), [(33, 33), (50, 54), (64, 64), (1, 5), (29, 31)])
@pytest.mark.parametrize("window", [1, 3, 8])
def test_local_chunk_matches_reference(Tq, Tk, window):
    q, k, v = qkv(Tq, Tk)
    torch.testing.assert_close(
        attention_local_chunk(q, k, v, window=window), attention_reference(q, k, v, window=window)
    )


def test_reference_is_softmax_attention_by_hand():
    q, k, v = qkv(3, 3, H=1, G=1, K=2, B=1)
    scores = q[0, 2, 0] @ k[0, :, 0].T / 2**0.5
    expected = torch.softmax(scores, -1) @ v[0, :, 0]
    torch.testing.assert_close(attention_reference(q, k, v)[0, 2, 0], expected)
    # The first query sees only the first key.
    torch.testing.assert_close(attention_reference(q, k, v)[0, 0, 0], v[0, 0, 0])
