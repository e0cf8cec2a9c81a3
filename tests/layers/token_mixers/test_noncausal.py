"""Non-causal mixing for every registered token mixer (layers/mixing.py, layers/wrappers.py).

Each mixer is built through ``make_mixer(spec, mixing="noncausal")`` from its ``test_kwargs``:
its native form (``causal=False``) when it declares ``noncausal == "native"``, else the
:class:`Bidirectional` wrapper. Checked: outputs read later tokens; the wrapper equals an explicit
forward pass plus a pass over the flipped input; native fast modes equal their non-causal
reference (outputs and input gradients, float64); padded positions never change real outputs and
a right-padded row equals the sequence alone; every parameter gets a gradient; no state.
"""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.mixing import make_mixer, mixer_class
from mixerlab.layers.wrappers import Bidirectional
from mixerlab.registry import TOKEN_MIXERS

NAMES = mixerlab.list_token_mixers()
NATIVE = [n for n in NAMES if mixer_class(n).noncausal == "native"]
WRAPPED = [n for n in NAMES if mixer_class(n).noncausal == "bidirectional"]
B, T = 2, 15
VALID = 11  # row 0 of the padding mask keeps its first VALID tokens


def spec(name: str) -> dict:
    kwargs = dict(TOKEN_MIXERS.entry(name).test_kwargs)
    kwargs.pop("dim")
    return {"name": name, **kwargs}


def dim_of(name: str) -> int:
    return TOKEN_MIXERS.entry(name).test_kwargs["dim"]


def build(name: str, **options) -> mixerlab.TokenMixer:
    """The non-causal form of ``name`` in float64, zero-initialised parameters moved off zero."""
    torch.manual_seed(0)
    mixer = make_mixer(spec(name), dim=dim_of(name), mixing="noncausal", **options).double()
    with torch.no_grad():
        for p in mixer.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.1)
    return mixer


def inputs(name: str, seq_len: int = T, seed: int = 1) -> torch.Tensor:
    kwargs = TOKEN_MIXERS.entry(name).test_kwargs
    if "grid" in kwargs:  # an image mixer built for a grid runs at its token count only
        seq_len = kwargs.get("num_prefix_tokens", 0) + kwargs["grid"][0] * kwargs["grid"][1]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, seq_len, dim_of(name), generator=g, dtype=torch.float64)


def padding_mask() -> torch.Tensor:
    """Row 0 right-padded after VALID tokens; row 1 padded at its first 3 positions."""
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, VALID:] = False
    mask[1, :3] = False
    return mask


def assert_close(actual, expected, what: str, rtol: float = 1e-7, atol: float = 1e-9):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def test_every_mixer_declares_a_known_form():
    for name in NAMES:
        assert mixer_class(name).noncausal in ("native", "bidirectional", "none"), name


@pytest.mark.parametrize("name", NAMES)
def test_outputs_read_later_tokens(name):
    if mixer_class(name).noncausal == "none":
        with pytest.raises(ConfigError, match="mixing"):
            build(name)
        return
    mixer = build(name)
    x = inputs(name)
    cut = T // 2
    x2 = x.clone()
    x2[:, cut] = torch.randn_like(x2[:, cut])  # only the token right after position cut - 1
    y1, state = mixer(x)
    y2, _ = mixer(x2)
    assert not torch.allclose(y2[:, cut - 1], y1[:, cut - 1]), f"{name}: position {cut - 1} ignores {cut}"
    assert state == {} and mixer.state_size(T) == 0 and mixer.init_state(B) == {}
    assert_close(mixer(x, state=mixer.init_state(B))[0], y1, f"{name}: init_state() vs state=None")


def _explicit(wrapper: Bidirectional, x: torch.Tensor) -> torch.Tensor:
    """The wrapper's definition written out: a forward pass, a pass over flip(x), combined."""
    y_f, _ = wrapper.forward_mixer(x)
    y_b, _ = wrapper.backward_mixer(x.flip(1))
    y_b = y_b.flip(1)
    if wrapper.combine == "sum":
        return y_f + y_b
    if wrapper.combine == "concat":
        return wrapper.out_proj(torch.cat([y_f, y_b], dim=-1))
    gate = torch.sigmoid(wrapper.gate_proj(x))
    return gate * y_f + (1 - gate) * y_b


@pytest.mark.parametrize("name", WRAPPED)
def test_bidirectional_equals_explicit_passes(name):
    wrapper = build(name)
    assert isinstance(wrapper, Bidirectional)
    x = inputs(name)
    y, _ = wrapper(x)
    assert_close(y, _explicit(wrapper, x), f"{name}: wrapper vs forward + flipped pass")
    # A right-padded row equals the sequence alone (the backward pass flips within the valid length).
    y_pad, _ = wrapper(x, mask=padding_mask())
    alone = x[:1, :VALID]
    assert_close(y_pad[:1, :VALID], _explicit(wrapper, alone), f"{name}: padded row vs the row alone")


@pytest.mark.parametrize("combine", ["concat", "gate"])
def test_bidirectional_combines(combine):
    wrapper = build("gla", combine=combine)
    x = inputs("gla")
    assert_close(wrapper(x)[0], _explicit(wrapper, x), f"combine={combine}")


def _native_fast_modes():
    return [(n, m) for n in NATIVE for m in mixer_class(n).modes if m != "reference"]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize(("name", "mode"), _native_fast_modes())
def test_native_fast_modes_match_reference(name, mode, masked):
    mixer = build(name)
    assert not mixer.causal
    x = inputs(name, seq_len=17).requires_grad_()  # 17 > 3 windows: sliding_window's blocked form
    mask = None
    if masked and not mixer.supports_mask:
        pytest.skip(
            f"{name} takes no padding mask (test_padding_never_changes_real_outputs checks the error)"
        )
    if masked:
        mask = torch.ones(B, x.shape[1], dtype=torch.bool)
        mask[0, 12:] = False
    g = torch.randn_like(x)
    results = {}
    for m in (mode, "reference"):
        mixer.mode = m
        y, _ = mixer(x, mask=mask)
        (dx,) = torch.autograd.grad(y, x, g)
        results[m] = (y, dx)
    assert_close(results[mode][0], results["reference"][0], f"{name}[{mode}] output vs reference")
    assert_close(results[mode][1], results["reference"][1], f"{name}[{mode}] input gradient vs reference")


@pytest.mark.parametrize("name", NAMES)
def test_padding_never_changes_real_outputs(name):
    if mixer_class(name).noncausal == "none":
        pytest.skip(f"{name} has no non-causal form")
    mixer = build(name)
    x, mask = inputs(name), padding_mask()
    if not mixer.supports_mask:  # an image grid has no padding: a mask is an error, never ignored
        with pytest.raises(ConfigError, match="mask"):
            mixer(x, mask=torch.ones(x.shape[:2], dtype=torch.bool))
        return
    x2 = x.clone()
    x2[~mask] = torch.randn_like(x2[~mask])
    y1, _ = mixer(x, mask=mask)
    y2, _ = mixer(x2, mask=mask)
    assert_close(y2[mask], y1[mask], f"{name}: real outputs changed with padded inputs")
    y_alone, _ = mixer(x[:1, :VALID])
    assert_close(y1[:1, :VALID], y_alone, f"{name}: right-padded row vs the row alone")


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    if mixer_class(name).noncausal == "none":
        pytest.skip(f"{name} has no non-causal form")
    mixer = build(name)
    y, _ = mixer(inputs(name))
    y.square().mean().backward()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: parameter {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: parameter {pname} got an all-zero gradient"


def test_wrapper_mode_reaches_both_directions():
    wrapper = build("gla")
    assert "reference" in wrapper.modes and wrapper.mode == wrapper.forward_mixer.mode
    wrapper.mode = "reference"
    assert wrapper.forward_mixer.mode == wrapper.backward_mixer.mode == "reference"
    with pytest.raises(ConfigError, match="mode"):
        wrapper.mode = "fastest"


def test_wrapper_directions_have_independent_parameters():
    wrapper = build("gla")
    f, b = wrapper.forward_mixer.qk_proj.weight, wrapper.backward_mixer.qk_proj.weight
    assert f.data_ptr() != b.data_ptr() and not torch.equal(f, b)


def test_a_mixer_declaring_none_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mixer_class("gla"), "noncausal", "none")
    with pytest.raises(ConfigError, match=r"gla: mixing='noncausal'.*causal"):
        make_mixer(spec("gla"), dim=16, mixing="noncausal")
    with pytest.raises(ConfigError, match="mixing='2d'"):
        make_mixer(spec("gla"), dim=16, mixing="2d", grid=(3, 5))
    assert make_mixer(spec("gla"), dim=16).causal


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="mixing='sideways'"):
        make_mixer("gla", dim=16, mixing="sideways")
    with pytest.raises(ConfigError, match="combine='max'"):
        make_mixer(spec("gla"), dim=16, mixing="noncausal", combine="max")
    with pytest.raises(ConfigError, match="grid"):  # an option of another mixing
        make_mixer(spec("gla"), dim=16, mixing="noncausal", grid=(3, 5))
    with pytest.raises(ConfigError, match="combine"):  # a native form has no wrapper to combine
        make_mixer(spec("attention"), dim=16, mixing="noncausal", combine="sum")
    with pytest.raises(ConfigError, match="causal"):  # the mixing sets it
        make_mixer({**spec("attention"), "causal": True}, dim=16, mixing="noncausal")
    with pytest.raises(ConfigError, match="combine"):
        make_mixer(spec("gla"), dim=16, combine="sum")


def test_native_state_and_bad_mask_are_clear_errors():
    mixer = build("attention")
    x = inputs("attention")
    cache = {"k": torch.zeros(B, 3, 2, 4, dtype=torch.float64)}  # a causal form's key/value cache
    with pytest.raises(ConfigError, match="state"):
        mixer(x, state=cache)
    with pytest.raises(ConfigError, match="mask"):
        mixer(x, mask=torch.ones(B, T))  # not bool
    causal = mixerlab.create_token_mixer("attention", **TOKEN_MIXERS.entry("attention").test_kwargs)
    with pytest.raises(ConfigError, match="mask"):  # the causal form still rejects a mask
        causal(x.float(), mask=padding_mask())


def test_noncausal_sliding_window_is_symmetric():
    mixer = build("sliding_window")
    window, t = mixer.window, T // 2
    x = inputs("sliding_window")
    y, _ = mixer(x)
    for offset, reads in ((window - 1, True), (window, False), (-(window - 1), True), (-window, False)):
        x2 = x.clone()
        x2[:, t + offset] = torch.randn_like(x2[:, t + offset])
        changed = not torch.allclose(mixer(x2)[0][:, t], y[:, t])
        assert changed == reads, f"position {t} {'should' if reads else 'should not'} read {t + offset}"
