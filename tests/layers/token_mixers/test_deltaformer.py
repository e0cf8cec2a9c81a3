"""deltaformer specifics beyond the registry-wide contract."""

from __future__ import annotations

import torch

import mixerlab


def make(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("deltaformer", dim=16, num_heads=2, **kwargs).double()


def test_a_repeated_pair_writes_only_what_the_memory_lacks():
    # token 1 repeats token 0 exactly (no rotary): its key reads back u_0 = v_0 with weight 1, so
    # the corrected value is (1 - beta) v: the delta rule's "write the difference"
    mixer = make(rotary_base=None)
    x0 = torch.randn(2, 1, 16, dtype=torch.float64)
    _, state = mixer(torch.cat([x0, x0], dim=1))
    v = mixer.qkv_proj(x0)[..., 2 * 16 :].reshape(2, 2, 8)
    beta = torch.sigmoid(mixer.b_proj(x0))[:, 0, :, None]
    torch.testing.assert_close(state["u"][:, 0], v)
    torch.testing.assert_close(state["u"][:, 1], (1 - beta) * v)


def test_state_grows_with_the_sequence():
    mixer = make()
    sizes = [mixer.state_size(t) for t in (1, 10, 20)]
    assert sizes == [2 * 16 * t for t in (1, 10, 20)]
    _, state = mixer(torch.randn(1, 20, 16, dtype=torch.float64))
    assert state["k"].shape == (1, 20, 2, 8) and state["u"].shape == (1, 20, 2, 8)
