"""Structured FFNs equal their dense equivalents and have the parameter counts they promise."""

from __future__ import annotations

import torch

import mixerlab


def test_lowrank_mlp_equals_dense_mlp_with_merged_weights():
    m = mixerlab.create_channel_mixer("lowrank_mlp", dim=12, expand=2, rank=3).double()
    x = torch.randn(4, 12, dtype=torch.float64)
    w1, w2 = m.up.merged_weight(), m.down.merged_weight()
    assert torch.linalg.matrix_rank(w1) == 3
    expected = torch.nn.functional.gelu(x @ w1 + m.up.bias) @ w2 + m.down.bias
    torch.testing.assert_close(m(x), expected)
    weights = sum(p.numel() for n, p in m.named_parameters() if "bias" not in n)
    assert weights == 3 * (12 + 24) * 2


def test_blockdiag_mlp_equals_dense_block_diagonal_with_shuffle():
    m = mixerlab.create_channel_mixer("blockdiag_mlp", dim=8, expand=2, num_blocks=2).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    w1, w2 = m.up.dense_weight(), m.down.dense_weight()  # [8, 16], [16, 8]
    assert (w1[:4, 8:] == 0).all() and (w1[4:, :8] == 0).all()
    h = torch.nn.functional.gelu(x @ w1 + m.up.bias)
    perm = torch.arange(16).reshape(2, 8).t().reshape(-1)  # hidden channel c*2+b <- b*8+c
    torch.testing.assert_close(m(x), h[:, perm] @ w2 + m.down.bias)


def test_blockdiag_mlp_mixes_across_blocks():
    m = mixerlab.create_channel_mixer("blockdiag_mlp", dim=8, expand=2, num_blocks=2).double()
    x = torch.randn(1, 8, dtype=torch.float64, requires_grad=True)
    m(x)[0, 0].backward()  # first output, in block 0
    assert x.grad[0, 4:].abs().sum() > 0, "output block 0 must depend on input block 1"
