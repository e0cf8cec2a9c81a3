"""``torch.compile`` captures every registered mixer: compiled == eager, outputs and gradients.

Each mixer declares ``compile_fullgraph``: whether its default (fast) mode is one graph under
``torch.compile(fullgraph=True)``. A mixer that declares it is compiled with ``fullgraph=True``
(a graph break is then an error); one that does not is compiled allowing breaks and must still
fail with ``fullgraph=True``, so a declaration that has gone stale either way fails here.

The ``aot_eager`` backend traces the forward and backward graphs exactly as Inductor would receive
them, without generating C++ for each mixer, so the whole registry is checked in CI time; the
Inductor speed-ups themselves are measured by ``benchmarks/compile_gain.py``, not asserted here.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.exc import TorchDynamoException

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.registry import TOKEN_MIXERS, Registry


def _mixer_and_input(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **TOKEN_MIXERS.entry(name).test_kwargs).double()
    # an image mixer runs at its grid's token count; otherwise an odd length, not a multiple of
    # any test chunk size, so that padding of the last chunk is traced too
    T = getattr(mixer, "num_tokens", None) or 33
    return mixer, torch.randn(2, T, mixer.dim, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", mixerlab.list_token_mixers())
def test_compiled_matches_eager(name):
    torch._dynamo.reset()  # all mixers share forward's code objects: start each from a clean cache
    mixer, x = _mixer_and_input(name)
    y, _ = mixer(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    fullgraph = type(mixer).compile_fullgraph
    compiled = torch.compile(mixer, backend="aot_eager", fullgraph=fullgraph)
    yc, _ = compiled(x)
    (gxc,) = torch.autograd.grad(yc.square().sum(), x)
    torch.testing.assert_close(yc, y, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gxc, gx, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "name", [n for n in mixerlab.list_token_mixers() if not TOKEN_MIXERS.entry(n).builder.compile_fullgraph]
)
def test_declared_graph_break_is_real(name):
    torch._dynamo.reset()
    mixer, x = _mixer_and_input(name)
    with pytest.raises(TorchDynamoException):  # a graph break is an error under fullgraph=True
        torch.compile(mixer, backend="aot_eager", fullgraph=True)(x)


def test_registry_rejects_a_non_bool_declaration():
    registry: Registry = Registry("token mixer")

    class Broken(torch.nn.Module):
        compile_fullgraph = "yes"

    with pytest.raises(ConfigError, match="compile_fullgraph"):
        registry.register("broken")(Broken)
