"""SELU feed-forward: activations of a deep stack stay near zero mean and unit variance."""

from __future__ import annotations

import torch

import mixerlab


def test_selu_stack_self_normalises():
    torch.manual_seed(0)
    layers = [mixerlab.create_channel_mixer("selu", dim=256, expand=1) for _ in range(16)]
    x = torch.randn(512, 256) * 3 + 1  # start far from the fixed point
    with torch.no_grad():
        for layer in layers:
            x = torch.nn.functional.selu(layer(x))
    assert abs(float(x.mean())) < 0.15
    assert 0.7 < float(x.var()) < 1.3
