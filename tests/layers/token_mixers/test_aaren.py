"""Aaren: the layer is softmax attention of a learned query over each prefix."""

from __future__ import annotations

import math

import torch
from einops import rearrange

import mixerlab


def test_layer_equals_prefix_attention_with_the_learned_query():
    mixer = mixerlab.create_token_mixer("aaren", dim=12, num_heads=3, chunk_size=4).double()
    x = torch.randn(2, 10, 12, dtype=torch.float64)
    y, state = mixer(x)
    k, v = rearrange(mixer.kv_proj(x), "b t (two h k) -> two b t h k", two=2, h=3)
    s = torch.einsum("bthk,hk->bth", k, mixer.query) / math.sqrt(4)
    outs = []
    for t in range(10):
        w = torch.softmax(s[:, : t + 1], dim=1)
        outs.append(torch.einsum("bth,bthk->bhk", w, v[:, : t + 1]))
    expected = mixer.o_proj(rearrange(torch.stack(outs, 1), "b t h k -> b t (h k)"))
    torch.testing.assert_close(y, expected)
    assert state["w"].shape == (2, 3, 4)


def test_state_size_does_not_grow():
    mixer = mixerlab.create_token_mixer("aaren", dim=8, num_heads=2)
    assert mixer.state_size(1) == mixer.state_size(10_000) == 2 * (4 + 2)
