"""Lizard's blocked meta-window attention (arXiv:2507.09025) against its per-query loop, float64."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.lizard import meta_window_attention_chunk, meta_window_attention_reference


@pytest.mark.parametrize(
    ("tq", "tk", "window", "num_meta"),
    [(33, 33, 4, 2), (21, 30, 5, 3), (17, 17, 4, 0), (12, 12, 1, 2), (9, 9, 3, 12), (1, 9, 4, 2)],
)
def test_blocked_window_op_matches_its_loop(tq, tk, window, num_meta):
    g = torch.Generator().manual_seed(tq + tk)
    q_window, q_meta = torch.randn(2, 2, tq, 3, 4, generator=g, dtype=torch.float64)
    k, v = torch.randn(2, 2, tk, 3, 4, generator=g, dtype=torch.float64)
    fast = meta_window_attention_chunk(q_window, q_meta, k, v, window=window, num_meta=num_meta)
    ref = meta_window_attention_reference(q_window, q_meta, k, v, window=window, num_meta=num_meta)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
