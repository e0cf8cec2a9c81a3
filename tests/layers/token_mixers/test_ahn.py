"""AHN: a window covering the whole sequence is plain causal attention; the state stays bounded."""

from __future__ import annotations

import torch

import mixerlab


def test_window_longer_than_the_sequence_is_full_attention():
    torch.manual_seed(0)
    ahn = mixerlab.create_token_mixer("ahn", dim=16, num_heads=2, window=64, chunk_size=4).double()
    attn = mixerlab.create_token_mixer("attention", dim=16, num_heads=2).double()
    with torch.no_grad():
        attn.q_proj.weight.copy_(ahn.qkv_proj.weight[:16])
        attn.kv_proj.weight.copy_(ahn.qkv_proj.weight[16:])
        attn.o_proj.weight.copy_(ahn.o_proj.weight)
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    torch.testing.assert_close(ahn(x)[0], attn(x)[0])


def test_memory_carries_what_left_the_window():
    torch.manual_seed(0)
    ahn = mixerlab.create_token_mixer("ahn", dim=16, num_heads=2, window=3).double()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 0] += 1.0  # token 0 is far outside the window of the last token
    y1, s1 = ahn(x)
    y2, s2 = ahn(x2)
    assert not torch.allclose(y1[:, -1], y2[:, -1])  # reached through the memory only
    assert s1["k"].shape[1] == 2 and ahn.state_size(12) == ahn.state_size(1000)
