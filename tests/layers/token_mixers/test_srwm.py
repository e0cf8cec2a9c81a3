"""srwm specifics beyond the registry-wide contract."""

from __future__ import annotations

import torch

import mixerlab


def test_state_is_the_shift_from_the_slow_weights():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("srwm", dim=16, num_heads=2).double()
    assert not any(t.abs().sum() for t in mixer.init_state(2).values())
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    _, state = mixer(x[:, :3])
    assert state["shift"].abs().sum() > 0  # the matrix modified itself
    # Gradients keep reaching the slow weights W_0 when a state is passed in.
    y, _ = mixer(x[:, 3:], state=state)
    y.sum().backward()
    assert mixer.weight.grad is not None and mixer.weight.grad.abs().sum() > 0
