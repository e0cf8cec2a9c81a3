"""Discrete key-value bottleneck: hard nearest-key lookup, updates stay local, keys are frozen."""

from __future__ import annotations

import torch

import mixerlab


def make():
    return mixerlab.create_channel_mixer(
        "kv_bottleneck", dim=6, num_codebooks=3, num_pairs=5, key_dim=2, value_dim=4
    ).double()


def test_forward_is_the_hard_lookup():
    m = make()
    x = torch.randn(7, 6, dtype=torch.float64)
    z = torch.einsum("nd,cdk->nck", x, m.proj)
    reads = []
    for n in range(7):
        row = []
        for c in range(3):
            s = int((z[n, c] - m.keys[c]).norm(dim=-1).argmin())
            row.append(m.values[c, s])
        reads.append(torch.cat(row))
    torch.testing.assert_close(m(x), m.decoder(torch.stack(reads)))


def test_only_selected_values_get_gradient_and_keys_are_buffers():
    m = make()
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    m(x).square().sum().backward()
    chosen = torch.zeros(3, 5, dtype=torch.bool)
    idx = m.select(x.detach())  # [2, 3]
    for n in range(2):
        chosen[torch.arange(3), idx[n]] = True
    touched = m.values.grad.abs().sum(-1) > 0
    assert torch.equal(touched, chosen)
    assert "keys" not in dict(m.named_parameters())
    assert x.grad.abs().sum() > 0, "straight-through path gives the input a gradient"


def test_init_keys_finds_clusters():
    m = mixerlab.create_channel_mixer(
        "kv_bottleneck", dim=2, num_codebooks=1, num_pairs=2, key_dim=2
    ).double()
    centres = torch.tensor([[5.0, 5.0], [-5.0, -5.0]], dtype=torch.float64)
    x = centres.repeat(50, 1) + 0.1 * torch.randn(100, 2, dtype=torch.float64)
    torch.manual_seed(1)
    m.init_keys(x)
    projected = centres @ m.proj[0]
    dist = torch.cdist(projected, m.keys[0])
    assert dist.min(-1).values.max() < 0.2
