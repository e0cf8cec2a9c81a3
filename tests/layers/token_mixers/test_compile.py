"""``torch.compile`` captures every registered mixer: compiled == eager, outputs and gradients.

The ``aot_eager`` backend traces the forward and backward graphs exactly as Inductor would receive
them, without generating C++ for each mixer, so the whole registry is checked in CI time; the
Inductor speed-ups themselves are measured by ``mixerlab speed``, not asserted here.
"""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.registry import TOKEN_MIXERS


@pytest.mark.parametrize("name", mixerlab.list_token_mixers())
def test_compiled_matches_eager(name):
    torch._dynamo.reset()
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **TOKEN_MIXERS.entry(name).test_kwargs)
    T = getattr(mixer, "num_tokens", None) or 24  # an image mixer runs at its grid's token count
    x = torch.randn(2, T, mixer.dim, requires_grad=True)
    y, _ = mixer(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    compiled = torch.compile(mixer, backend="aot_eager")
    yc, _ = compiled(x)
    (gxc,) = torch.autograd.grad(yc.square().sum(), x)
    torch.testing.assert_close(yc, y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gxc, gx, rtol=1e-4, atol=1e-5)
