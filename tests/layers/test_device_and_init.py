"""Every registered block builds on a device and in a dtype, and re-initialises after the fact.

Parametrised over the registries (token mixers, channel mixers, norms, stems, heads, models), each
entry with its ``test_kwargs``:

- built on ``meta`` it allocates nothing and draws no random number;
- built on ``meta``, materialised on the CPU (``to_empty`` + ``reset_all``) it runs, has the shapes
  of a normal build, and the values of a normal build for everything that is not drawn at random;
  with the same seed it is bit-identical to a normal build, except for the blocks listed in
  ``DRAW_ORDER_DIFFERS`` (their own draws come before a child's at construction, and ``reset_all``
  resets children first), whose drawn parameters are checked for their scale instead;
- ``dtype=torch.float64`` gives float64 tensors and a float64 forward pass;
- ``reset_all`` after parameters were overwritten restores an initialisation;
- every submodule that holds parameters or buffers defines ``reset_parameters``;
- ``materialize`` keeps tied weights and shared modules, and the non-causal / 2-D wrappers
  recompute their scan tables and zero gates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.init import build_on, materialize, reset_all
from mixerlab.layers.mixing import mixer_class
from mixerlab.layers.sharing import sharing_scope
from mixerlab.models.stems import FeatureTokenizer, PatchEmbedding, SeriesEmbedding, TokenEmbedding
from mixerlab.registry import CHANNEL_MIXERS, HEADS, MODELS, NORMS, STEMS, TOKEN_MIXERS, Registry

REGISTRIES: tuple[Registry, ...] = (TOKEN_MIXERS, CHANNEL_MIXERS, NORMS, STEMS, HEADS, MODELS)
_ID = {
    "token mixer": "tm",
    "channel mixer": "cm",
    "norm": "norm",
    "stem": "stem",
    "head": "head",
    "model": "model",
}
CASES = [pytest.param(reg, e.name, id=f"{_ID[reg.kind]}_{e.name}") for reg in REGISTRIES for e in reg]

# Blocks whose seeded meta-build + reset_all is not bit-identical to a seeded normal build: a
# parameter of their own is drawn before (some of) their children's at construction, while
# reset_all resets children first. Same distributions, another draw order.
DRAW_ORDER_DIFFERS = {
    ("token mixer", "aaren"),
    ("token mixer", "gam"),
    ("token mixer", "h3"),
    ("token mixer", "hyena"),
    ("token mixer", "lstm"),
    ("token mixer", "mamba2"),
    ("token mixer", "pararnn"),
    ("token mixer", "pgn"),
    ("token mixer", "s4d"),
    ("token mixer", "slstm"),
    ("token mixer", "srwm"),
    ("channel mixer", "hourglass_mlp"),
    ("channel mixer", "kv_bottleneck"),
    ("channel mixer", "moe"),  # with shared experts, built after the routed ones are drawn
    # Models: compose builds the backbone before the stem, a model's children are stem, backbone.
    ("model", "forecaster"),
    ("model", "image_classifier"),
    ("model", "image_stages"),
    ("model", "scaling_mlp"),
    ("model", "lm"),
    ("model", "tabular"),
}

_PUBLIC: dict[str, Callable[..., Any]] = {
    TOKEN_MIXERS.kind: mixerlab.create_token_mixer,
    CHANNEL_MIXERS.kind: mixerlab.create_channel_mixer,
    NORMS.kind: mixerlab.create_norm,
    MODELS.kind: mixerlab.create_model,
}


def _build(reg: Registry, name: str, build: dict[str, Any] | None = None, **where: Any) -> nn.Module:
    """Build through the public ``create_*`` where there is one (stems and heads have none), with
    the entry's ``test_kwargs`` unless ``build`` gives the options."""
    kwargs = dict(reg.entry(name).test_kwargs if build is None else build)
    with sharing_scope():  # two builds never share a module (WideNet's MoE outside a model)
        if reg.kind in _PUBLIC:
            return _PUBLIC[reg.kind](name, **kwargs, **where)
        return build_on(lambda: reg.create(name, **kwargs), **where)


def _stem_inputs(stem: nn.Module, dtype: torch.dtype, g: torch.Generator) -> Any:
    if isinstance(stem, TokenEmbedding):
        return torch.randint(0, stem.vocab_size, (2, 7), generator=g)
    if isinstance(stem, PatchEmbedding):
        size = stem.image_size
        return torch.randn(2, stem.in_chans, size, size, generator=g, dtype=dtype)
    if isinstance(stem, FeatureTokenizer):
        categorical = torch.stack([torch.randint(0, c, (2,), generator=g) for c in stem.cardinalities], -1)
        return {
            "numerical": torch.randn(2, stem.num_features, generator=g, dtype=dtype),
            "categorical": categorical,
        }
    if isinstance(stem, SeriesEmbedding):
        return torch.randn(2, stem.context, stem.num_channels, generator=g, dtype=dtype)
    raise AssertionError(f"no inputs for {type(stem).__name__}")


def _forward(reg: Registry, module: nn.Module, dtype: torch.dtype = torch.float32) -> Tensor:
    """Run ``module`` on small inputs of ``dtype``; returns its output."""
    g = torch.Generator().manual_seed(1)
    if reg is TOKEN_MIXERS:
        T = getattr(module, "num_tokens", None) or 7  # an image mixer runs at its grid's token count
        return module(torch.randn(2, T, module.dim, generator=g, dtype=dtype))[0]
    if reg in (CHANNEL_MIXERS, NORMS):
        return module(torch.randn(2, 5, module.dim, generator=g, dtype=dtype))
    if reg is STEMS:
        return module(_stem_inputs(module, dtype, g))[0]
    if reg is HEADS:
        T = getattr(module, "num_tokens", 5)
        dim = (module if isinstance(module, nn.Linear) else module.proj).in_features
        return module(
            torch.randn(2, T, dim // T if hasattr(module, "num_tokens") else dim, generator=g, dtype=dtype)
        )
    return module(_stem_inputs(module.stem, dtype, g))[0]


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers by name, persistent or not (computed buffers are checked too)."""
    return dict(module.named_parameters()) | dict(module.named_buffers())


def _seeded(fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return fn()


def _drawn(reg: Registry, name: str, build: dict[str, Any] | None = None) -> set[str]:
    """Names of the tensors a normal build draws at random (they differ between two seeds)."""
    a, b = (_tensors(_seeded(lambda: _build(reg, name, build=build), s)) for s in (1, 2))
    return {n for n in a if not torch.equal(a[n], b[n])}


@pytest.mark.parametrize(("reg", "name"), CASES)
def test_meta_build_allocates_nothing_and_draws_nothing(reg: Registry, name: str) -> None:
    before = torch.get_rng_state()
    module = _build(reg, name, device="meta")
    assert torch.equal(torch.get_rng_state(), before), "building on meta advanced the CPU generator"
    real = [n for n, t in _tensors(module).items() if not t.is_meta]
    assert not real, f"tensors with real storage: {real}"


@pytest.mark.parametrize(("reg", "name"), CASES)
def test_materialized_meta_build_matches_a_normal_build(reg: Registry, name: str) -> None:
    normal = _tensors(_seeded(lambda: _build(reg, name), 1))
    module = _build(reg, name, device="meta")
    torch.manual_seed(1)
    materialize(module, "cpu")
    got = _tensors(module)
    assert got.keys() == normal.keys()
    for n, t in got.items():
        assert t.shape == normal[n].shape and t.dtype == normal[n].dtype and t.device.type == "cpu", n

    if (reg.kind, name) not in DRAW_ORDER_DIFFERS:
        # Guaranteed: the same seed gives the same weights as a normal build, bit for bit.
        different = [n for n in got if not torch.equal(got[n], normal[n])]
        assert not different, f"not bit-identical to a seeded normal build: {different}"
    else:
        _check_same_distributions(reg, name, got, normal)
    assert torch.isfinite(_forward(reg, module)).all()  # last: training-mode BatchNorm updates stats


def _check_same_distributions(
    reg: Registry,
    name: str,
    got: dict[str, Tensor],
    normal: dict[str, Tensor],
    build: dict[str, Any] | None = None,
) -> None:
    """Tensors that are not drawn equal the normal build's; drawn ones have its scale."""
    drawn = _drawn(reg, name, build)
    for n, t in got.items():
        if n not in drawn:  # constants and computed tables: exactly the constructor's
            assert torch.equal(t, normal[n]), n
        elif t.is_floating_point() and t.numel() >= 8:  # drawn: same scale as a normal build
            ref = normal[n].float()
            assert 0.5 < t.float().std() / ref.std() < 2.0, n
            assert (
                t.float().mean() - ref.mean()
            ).abs() <= 3 * ref.std() / t.numel() ** 0.5 + 0.5 * ref.abs().mean(), n


@pytest.mark.parametrize(("reg", "name"), CASES)
def test_float64_build_and_forward(reg: Registry, name: str) -> None:
    for module in (
        _build(reg, name, dtype=torch.float64),
        materialize(_build(reg, name, device="meta", dtype=torch.float64), "cpu"),
    ):
        wrong = [n for n, t in _tensors(module).items() if t.is_floating_point() and t.dtype != torch.float64]
        assert not wrong, f"not float64: {wrong}"
        y = _forward(reg, module, torch.float64)
        assert y.dtype == torch.float64 and torch.isfinite(y).all()


@pytest.mark.parametrize(("reg", "name"), CASES)
def test_reset_after_training_restores_an_initialisation(reg: Registry, name: str) -> None:
    torch.manual_seed(3)
    fresh = _tensors(_build(reg, name))
    module = _build(reg, name)
    with torch.no_grad():
        for t in _tensors(module).values():
            if t.is_floating_point():
                t.fill_(0.123)  # what an optimiser (or a bug) could leave behind
    reset_all(module)
    drawn = _drawn(reg, name)
    for n, t in _tensors(module).items():
        if not t.is_floating_point():
            continue
        if n in drawn:
            assert not torch.all(t == 0.123), f"{n} was not re-initialised"
        else:
            assert torch.equal(t, fresh[n]), f"{n} is not back to its initial value"


@pytest.mark.parametrize(("reg", "name"), CASES)
def test_every_module_holding_tensors_resets_them(reg: Registry, name: str) -> None:
    with torch.device("meta"):
        module = reg.create(name, **reg.entry(name).test_kwargs)
    # Parameter containers have no init of their own: the module holding them initialises them.
    containers = (nn.ParameterDict, nn.ParameterList)
    missing = {
        type(m).__name__
        for m in module.modules()
        if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))
        if not isinstance(m, containers) and not callable(getattr(m, "reset_parameters", None))
    }
    assert not missing, f"hold parameters or buffers but have no reset_parameters: {sorted(missing)}"


def test_materialize_keeps_tied_weights_and_shared_modules() -> None:
    lm = materialize(mixerlab.create_model("lm", **MODELS.entry("lm").test_kwargs, device="meta"), "cpu")
    assert lm.head.weight is lm.stem.weight
    widenet = {"name": "widenet_moe", "num_experts": 2, "top_k": 1, "hidden_dim": 4}
    model = mixerlab.create_model(
        "lm", **MODELS.entry("lm").test_kwargs, channel_mixer=widenet, device="meta"
    )
    materialize(model, "cpu")
    first, second = (block.channel_mixer.moe for block in model.backbone.blocks)
    assert first is second and not first.w_in.is_meta


@pytest.mark.parametrize("mixer", TOKEN_MIXERS.list())
def test_meta_language_model_with_every_mixer_runs(mixer: str) -> None:
    # The grid of an image mixer comes from the model's stem, not from its spec.
    spec = {
        k: v
        for k, v in TOKEN_MIXERS.entry(mixer).test_kwargs.items()
        if k not in ("dim", "grid", "num_prefix_tokens")
    }
    # A non-causal-only (image) mixer has no language model: it is run in the image model.
    name = "lm" if mixer_class(mixer).causal else "image_classifier"
    model = mixerlab.create_model(
        name, **MODELS.entry(name).test_kwargs, mixer={"name": mixer, **spec}, device="meta"
    )
    assert all(t.is_meta for t in _tensors(model).values())
    materialize(model, "cpu")
    assert torch.isfinite(_forward(MODELS, model)).all()


def test_device_and_dtype_are_checked() -> None:
    with pytest.raises(ConfigError, match="dtype"):
        mixerlab.create_norm("rmsnorm", dim=4, dtype=torch.int64)
    with pytest.raises(ConfigError, match="device"):
        mixerlab.create_norm("rmsnorm", dim=4, device="no-such-device")
    norm = mixerlab.create_norm("rmsnorm", dim=4, dtype=torch.bfloat16)
    assert norm.weight.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "mixing",
    ["2d", {"name": "noncausal", "combine": "gate"}, {"name": "noncausal", "combine": "concat"}],
    ids=["cross_scan_2d", "bidirectional_gate", "bidirectional_concat"],
)
def test_wrappers_materialize_with_their_tables_and_zero_gates(mixing: Any) -> None:
    kwargs = {**MODELS.entry("image_classifier").test_kwargs, "mixer": "mamba", "mixing": mixing}
    normal = _tensors(_seeded(lambda: mixerlab.create_model("image_classifier", **kwargs), 1))
    model = mixerlab.create_model("image_classifier", **kwargs, device="meta")
    assert all(t.is_meta for t in _tensors(model).values())
    torch.manual_seed(1)
    got = _tensors(materialize(model, "cpu"))
    # Scan-order tables are recomputed, the gate starts at zero, the rest has the right scale.
    _check_same_distributions(MODELS, "image_classifier", got, normal, build=kwargs)
    assert torch.isfinite(_forward(MODELS, model)).all()
