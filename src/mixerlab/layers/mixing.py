"""How a token mixer mixes: the one place that turns a mixer spec plus a *mixing* into a module.

A model asks for one of these mixings (a modality's need, not a mixer's option):

- ``"causal"``: the registered mixer as it is (every mixer; the language model's mixing);
- ``"noncausal"``: every position sees every other (images, tables, series encoders), through the
  mixer's native non-causal form when its paper defines one (``TokenMixer.noncausal == "native"``:
  built with ``causal=False``), else the generic :class:`~mixerlab.layers.wrappers.Bidirectional`
  wrapper (``"bidirectional"``; option ``combine``: ``"sum"`` (default), ``"concat"``, ``"gate"``);
- ``"2d"``: the tokens are an ``H x W`` grid (option ``grid=(H, W)``, required), read in several
  scan orders by :class:`~mixerlab.layers.wrappers.CrossScan2D` (options ``orders``, default
  VMamba's four directions; ``num_prefix_tokens``, default 0; ``combine``: ``"mean"`` or ``"sum"``).
  Each scan runs the mixer's causal form, natively non-causal mixers included.

A mixer that declares ``noncausal == "none"`` (its docstring says why) only mixes causally; asking
for another mixing is a clear error. So is an option the mixing does not take, and a ``causal``
option in the spec of a natively non-causal mixer (the mixing sets it).

An image mixer (``causal = False``: a convolution, a token MLP, see
:mod:`mixerlab.layers.token_mixers.vision_base`) only mixes non-causally, natively; when its
constructor takes ``grid``, the ``"noncausal"`` mixing passes it the options ``grid`` and
``num_prefix_tokens`` (the stem's patch grid and class tokens), which its spec leaves out.

Shapes: ``x: [B, T, D]`` in and out.
"""

from __future__ import annotations

from typing import Any

from mixerlab.errors import ConfigError
from mixerlab.layers.spec import Spec, build, split_spec
from mixerlab.layers.wrappers import CROSS_SCAN, Bidirectional, CrossScan2D
from mixerlab.registry import TOKEN_MIXERS

MIXINGS = ("causal", "noncausal", "2d")
# The options each mixing takes (beyond the spec's own), for the error on an unknown one.
_OPTIONS = {"causal": (), "noncausal": ("combine",), "2d": ("grid", "orders", "num_prefix_tokens", "combine")}


def mixer_class(spec: Spec) -> type:
    """The registered class (or builder) behind ``spec``."""
    name, _ = split_spec(spec, TOKEN_MIXERS.kind)
    return TOKEN_MIXERS.entry(name).builder


def make_mixer(spec: Spec, *, dim: int, mixing: str = "causal", **options: Any):
    """Build the token mixer of ``spec`` at width ``dim`` for ``mixing`` (see the module docstring)."""
    if mixing not in MIXINGS:
        raise ConfigError("backbone", "mixing", mixing, f"expected one of {list(MIXINGS)}")
    name, spec_options = split_spec(spec, TOKEN_MIXERS.kind)
    cls = mixer_class(spec)
    form = getattr(cls, "noncausal", "bidirectional")
    native = mixing == "noncausal" and form == "native"
    takes_grid = "grid" in TOKEN_MIXERS.entry(name).parameters()
    if not getattr(cls, "causal", True) and mixing != "noncausal":
        raise ConfigError(
            name, "mixing", mixing, f"{name} only mixes non-causally (it has no causal form); use 'noncausal'"
        )
    # A native form takes no wrapper options; an image mixer takes the grid of the model's stem.
    allowed = (("grid", "num_prefix_tokens") if takes_grid else ()) if native else _OPTIONS[mixing]
    for key, value in options.items():
        if key not in allowed:
            if native:
                why = f"{name} is natively non-causal (causal=False, no wrapper), so mixing='noncausal'"
                raise ConfigError(name, key, value, f"{why} takes no options for it")
            raise ConfigError(name, key, value, f"mixing={mixing!r} takes the options {list(allowed)}")
    if form == "native" and "causal" in spec_options:
        raise ConfigError(
            name, "causal", spec_options["causal"], "set by the model's mixing; leave it out of the spec"
        )
    if mixing == "causal":
        return build(TOKEN_MIXERS, spec, dim=dim)
    if form == "none":
        raise ConfigError(
            name, "mixing", mixing, f"{name} only mixes causally (its docstring says why); use 'causal'"
        )
    if native:
        grid_options = {k: v for k, v in options.items() if k in ("grid", "num_prefix_tokens")}
        for key in grid_options:
            if key in spec_options:
                raise ConfigError(
                    name, key, spec_options[key], "set by the model's stem; leave it out of the spec"
                )
        return build(TOKEN_MIXERS, spec, dim=dim, causal=False, **grid_options)
    if mixing == "noncausal":
        forward, backward = build(TOKEN_MIXERS, spec, dim=dim), build(TOKEN_MIXERS, spec, dim=dim)
        return Bidirectional(forward, backward, combine=options.get("combine", "sum"))
    if "grid" not in options:
        raise ConfigError(name, "grid", None, "mixing='2d' needs grid=(H, W), the token grid")
    orders = options.get("orders", CROSS_SCAN)
    if isinstance(orders, str) or not orders:
        raise ConfigError(
            name, "orders", orders, f"expected a non-empty list of scan orders, e.g. {list(CROSS_SCAN)}"
        )
    return CrossScan2D(
        [build(TOKEN_MIXERS, spec, dim=dim) for _ in orders],
        grid=options["grid"],
        orders=orders,
        num_prefix_tokens=options.get("num_prefix_tokens", 0),
        combine=options.get("combine", "mean"),
    )
