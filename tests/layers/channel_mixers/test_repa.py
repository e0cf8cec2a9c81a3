"""RePaViT: the folded layer equals the training-form layer in eval mode, with fewer weights."""

from __future__ import annotations

import pytest
import torch

import mixerlab


@pytest.mark.parametrize("batchnorm", [False, True])
def test_fold_preserves_outputs(batchnorm):
    m = mixerlab.create_channel_mixer("repa_mlp", dim=8, expand=4, batchnorm=batchnorm).double()
    if batchnorm:  # give BN non-trivial running statistics and affine parameters
        with torch.no_grad():
            for _ in range(3):
                m(torch.randn(16, 8, dtype=torch.float64) * 2 + 1)
            m.norm.weight.uniform_(0.5, 1.5)
            m.norm.bias.uniform_(-0.5, 0.5)
    m.eval()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    before = m(x)
    dense = sum(p.numel() for p in m.parameters())
    m.fold()
    torch.testing.assert_close(m(x), before)
    folded = sum(p.numel() for p in m.folded.parameters())
    assert folded < dense  # idle 24 channels (2 * 8 * 24 weights) became one 8 x 8 matrix


def test_fold_refuses_training_mode():
    m = mixerlab.create_channel_mixer("repa_mlp", dim=8).train()
    with pytest.raises(mixerlab.ConfigError, match="training"):
        m.fold()


def test_idle_channels_are_linear():
    m = mixerlab.create_channel_mixer("repa_mlp", dim=4, expand=2, active_ratio=0.5).double()
    with torch.no_grad():
        m.up.weight[: m.active] = 0  # silence the active channels
        m.up.bias[: m.active] = 0
    x = torch.randn(3, 4, dtype=torch.float64)
    # with only idle channels left the layer is affine: f(2x) - f(x) == f(x) - f(0)
    zero = torch.zeros(1, 4, dtype=torch.float64)
    torch.testing.assert_close(m(2 * x) - m(x), m(x) - m(zero))
