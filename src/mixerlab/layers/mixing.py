"""How a token mixer mixes: the one place that turns a mixer spec plus a *mixing* into a module.

A model asks for one of these mixings (a modality's need, not a mixer's option):

- ``"causal"``: the registered mixer as it is (every mixer; the language model's mixing);
- ``"noncausal"``: every position sees every other (images, tables, series encoders), through the
  mixer's native non-causal form when its paper defines one (``TokenMixer.noncausal == "native"``),
  else the generic bidirectional wrapper (``"bidirectional"``); a mixer that declares ``"none"``
  is a clear error.

Shapes: ``x: [B, T, D]`` in and out.
"""

from __future__ import annotations

from typing import Any

from mixerlab.errors import ConfigError
from mixerlab.layers.spec import Spec, build, split_spec
from mixerlab.registry import TOKEN_MIXERS

MIXINGS = ("causal", "noncausal")


def mixer_class(spec: Spec) -> type:
    """The registered class (or builder) behind ``spec``."""
    name, _ = split_spec(spec, TOKEN_MIXERS.kind)
    return TOKEN_MIXERS.entry(name).builder


def make_mixer(spec: Spec, *, dim: int, mixing: str = "causal", **options: Any):
    """Build the token mixer of ``spec`` at width ``dim`` for ``mixing`` (see the module docstring)."""
    if mixing not in MIXINGS:
        raise ConfigError("backbone", "mixing", mixing, f"expected one of {list(MIXINGS)}")
    if mixing == "causal":
        return build(TOKEN_MIXERS, spec, dim=dim)
    name, _ = split_spec(spec, TOKEN_MIXERS.kind)
    raise ConfigError(name, "mixing", mixing, "non-causal mixing is not available for this mixer yet")
