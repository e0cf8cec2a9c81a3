"""Gated attention: with the gate saturated open it is plain attention."""

from __future__ import annotations

import torch

import mixerlab


def test_open_gate_reduces_to_attention():
    torch.manual_seed(0)
    gated = mixerlab.create_token_mixer("gated_attention", dim=16, num_heads=4, num_kv_heads=2, bias=True)
    plain = mixerlab.create_token_mixer("attention", dim=16, num_heads=4, num_kv_heads=2, bias=True)
    gated, plain = gated.double(), plain.double()
    with torch.no_grad():
        for name in ("q_proj", "kv_proj", "o_proj"):
            getattr(plain, name).load_state_dict(getattr(gated, name).state_dict())
        gated.gate_proj.weight.zero_()
        gated.gate_proj.bias.fill_(60.0)  # sigmoid(60) == 1 in float64 to ~1e-26
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    torch.testing.assert_close(gated(x)[0], plain(x)[0])


def test_closed_gate_silences_the_output():
    gated = mixerlab.create_token_mixer("gated_attention", dim=16, num_heads=2, bias=True).double()
    with torch.no_grad():
        gated.gate_proj.weight.zero_()
        gated.gate_proj.bias.fill_(-60.0)
        gated.o_proj.bias.zero_()
    y, _ = gated(torch.randn(2, 7, 16, dtype=torch.float64))
    assert y.abs().max() < 1e-20
