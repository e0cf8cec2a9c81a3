"""GAM: only the convolution reads the past; the memory read is per token."""

from __future__ import annotations

import torch

import mixerlab


def test_with_a_one_tap_conv_every_token_is_processed_alone():
    mixer = mixerlab.create_token_mixer("gam", dim=8, num_slots=5, conv_size=1).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    y, state = mixer(x)
    perm = torch.randperm(9)
    y_perm, _ = mixer(x[:, perm])
    torch.testing.assert_close(y_perm, y[:, perm])
    assert state["conv"].shape == (2, 0, 8)


def test_global_pathway_reads_a_convex_combination_of_slots():
    mixer = mixerlab.create_token_mixer("gam", dim=8, num_slots=4, conv_size=2).double()
    with torch.no_grad():
        mixer.conv.weight.zero_()
        mixer.conv.bias.zero_()
        mixer.gate_proj.weight.zero_()
        mixer.gate_proj.bias.fill_(60.0)  # both gates fully open
        mixer.memory.copy_(torch.eye(4, 8, dtype=torch.float64))
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    y, _ = mixer(x)
    torch.testing.assert_close(y[..., :4], torch.softmax(x[..., :4], dim=-1))
    assert y[..., 4:].abs().max() == 0
