"""GSA specifics: a bounded memory of slots (state fixed in size), the forget gate's range."""

from __future__ import annotations

import torch

import mixerlab


def test_state_is_bounded_by_the_slots_not_the_length():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("gsa", dim=8, num_heads=2, num_slots=3).double()
    sizes = set()
    for T in (1, 9, 40):
        _, state = mixer(torch.randn(1, T, 8, dtype=torch.float64))
        sizes.add(sum(t.numel() for t in state.values()))
    assert sizes == {mixer.state_size(1)} == {2 * 2 * 3 * 4}


def test_one_slot_ignores_queries_and_keys():
    """One slot: the softmax over slots is 1, so the query and key weights do not matter."""
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("gsa", dim=8, num_heads=2, num_slots=1).double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    y1, _ = mixer(x)
    with torch.no_grad():
        mixer.qkv_proj.weight[:16].normal_()  # the query and key rows
    torch.testing.assert_close(mixer(x)[0], y1)


def test_temperature_keeps_the_gate_near_one():
    """``alpha = sigmoid(.)^(1/tau)``: a larger temperature forgets more slowly."""
    kept = {}
    for tau in (1.0, 8.0):
        torch.manual_seed(0)
        mixer = mixerlab.create_token_mixer("gsa", dim=8, num_heads=2, num_slots=3, gate_temperature=tau)
        s0 = mixer.double().init_state(1)
        s0 = {key: torch.ones_like(t) for key, t in s0.items()}
        _, state = mixer(torch.zeros(1, 20, 8, dtype=torch.float64), state=s0)  # zero input: only decay
        kept[tau] = state["value_slots"].norm().item()
    assert kept[8.0] > kept[1.0]
