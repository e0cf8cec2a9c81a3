"""The token-mixer contract, checked for every registered mixer (see layers/token_mixers/base.py).

Registering a mixer with ``test_kwargs`` is enough to have it checked here: shapes, causality,
gradients reaching every parameter, float64 equivalence of each fast mode with the per-step
reference (outputs and input gradients), state passing across arbitrary split points, one-token
decoding, ``state_size`` against the returned state, and clear errors for bad options.
The behavioural checks run on every device of the ``device`` fixture (tests/conftest.py): the CPU,
and CUDA where present, in float64 there too (mixerlab's own paths: accelerated backends such as
fla's kernels take no float64; they are checked in tests/ops/test_backends_fla.py).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.token_mixers.base import state_numel
from mixerlab.registry import TOKEN_MIXERS

NAMES = mixerlab.list_token_mixers()
B, T = 2, 33  # odd length: chunk sizes in test_kwargs should not divide it


def make(name: str, device: torch.device | str = "cpu", **overrides) -> mixerlab.TokenMixer:
    entry = TOKEN_MIXERS.entry(name)
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **{**entry.test_kwargs, **overrides}).double().to(device)
    # Move any zero-initialised parameters off zero so that no path is hidden by a zero weight.
    with torch.no_grad():
        for p in mixer.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.1)
    return mixer


def inputs(mixer, seq_len: int = T, seed: int = 1) -> torch.Tensor:
    # An image mixer sized by its grid runs at that token count only (vision_base: num_tokens).
    seq_len = getattr(mixer, "num_tokens", None) or seq_len
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, seq_len, mixer.dim, generator=g, dtype=torch.float64)
    return x.to(next(mixer.parameters(), x).device)  # drawn on the CPU: the same numbers everywhere


def assert_close(actual, expected, what: str, rtol: float = 1e-7, atol: float = 1e-9):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def skip_noncausal_only(mixer, name: str) -> None:
    if not mixer.causal:
        pytest.skip(
            f"{name} is non-causal only (an image mixer): it reads the whole grid at once and carries "
            "no state to pass on (state {}, state_size 0, checked in test_noncausal.py)"
        )


def run_split(mixer, x, points):
    ys, state = [], None
    bounds = [0, *points, x.shape[1]]
    for a, b in itertools.pairwise(bounds):
        y, state = mixer(x[:, a:b], state=state)
        ys.append(y)
    return torch.cat(ys, dim=1), state


def test_registry_has_the_foundation_mixers():
    expected = {
        "attention",
        "sliding_window",
        "linear_attention",
        "retention",
        "gla",
        "mamba",
        "mingru",
        "minlstm",
        "lstm",
        "hyena",
    }
    missing = expected - set(NAMES)
    assert not missing, f"not registered: {sorted(missing)}"


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_documented(name):
    entry = TOKEN_MIXERS.entry(name)
    assert entry.paper and entry.arxiv, f"{name}: register with paper= and arxiv="
    doc = (entry.builder.__doc__ or "").splitlines()[0]
    assert entry.arxiv in doc, (
        f"{name}: the first docstring line should name the paper and arXiv:{entry.arxiv}"
    )
    assert entry.test_kwargs, f"{name}: register with tiny test_kwargs"
    assert "reference" in entry.builder.modes


@pytest.mark.parametrize("name", NAMES)
def test_shape_gradients_and_finite(name, device):
    mixer = make(name, device)
    x = inputs(mixer).requires_grad_()
    y, state = mixer(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: parameter {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: parameter {pname} got an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_causal(name, mode, device):
    mixer = make(name, device)
    if mode == "reference":
        mixer.mode = "reference"
    if not mixer.causal:
        pytest.skip(f"{name} is not causal by design")
    x = inputs(mixer)
    cut = 17
    x2 = x.clone()
    x2[:, cut:] = torch.randn_like(x2[:, cut:])
    y1, _ = mixer(x)
    y2, _ = mixer(x2)
    assert_close(y2[:, :cut], y1[:, :cut], f"{name}: output before position {cut} changed with future tokens")
    assert not torch.allclose(y2[:, cut:], y1[:, cut:]), f"{name}: later outputs ignore their own inputs"


def _fast_modes(name):
    return [(name, m) for m in TOKEN_MIXERS.entry(name).builder.modes if m != "reference"]


FAST = [pair for name in NAMES for pair in _fast_modes(name)]


@pytest.mark.parametrize(("name", "mode"), FAST)
def test_fast_mode_matches_reference(name, mode, device):
    mixer = make(name, device)
    x = inputs(mixer).requires_grad_()
    g = torch.randn_like(x)
    results = {}
    for m in (mode, "reference"):
        mixer.mode = m
        y, state = mixer(x)
        (dx,) = torch.autograd.grad(y, x, g)
        results[m] = (y, dx, state)
    y, dx, state = results[mode]
    y_ref, dx_ref, state_ref = results["reference"]
    assert_close(y, y_ref, f"{name}[{mode}] output vs reference")
    assert_close(dx, dx_ref, f"{name}[{mode}] input gradient vs reference")
    assert state.keys() == state_ref.keys()
    for key in state:
        assert_close(state[key], state_ref[key], f"{name}[{mode}] final state {key!r} vs reference")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_state_passing_across_splits(name, mode, device):
    mixer = make(name, device)
    skip_noncausal_only(mixer, name)
    if mode == "reference":
        mixer.mode = "reference"
    x = inputs(mixer)
    y_full, s_full = mixer(x)
    for points in ([1], [5, 6, 20], [16]):
        y_split, s_split = run_split(mixer, x, points)
        assert_close(y_split, y_full, f"{name}[{mixer.mode}] split at {points}")
        for key in s_full:
            assert_close(
                s_split[key], s_full[key], f"{name}[{mixer.mode}] state {key!r} after split at {points}"
            )


@pytest.mark.parametrize("name", NAMES)
def test_token_by_token_decoding(name, device):
    mixer = make(name, device)
    skip_noncausal_only(mixer, name)
    x = inputs(mixer, seq_len=12)
    y_full, _ = mixer(x)
    y_steps, _ = run_split(mixer, x, list(range(1, 12)))
    assert_close(y_steps, y_full, f"{name}: one-token steps vs one call")


@pytest.mark.parametrize("name", NAMES)
def test_explicit_initial_state_equals_none(name, device):
    mixer = make(name, device)
    x = inputs(mixer, seq_len=9)
    y1, _ = mixer(x)
    y2, _ = mixer(x, state=mixer.init_state(B, device=device))
    assert_close(y2, y1, f"{name}: init_state() vs state=None")


@pytest.mark.parametrize("name", NAMES)
def test_state_size_counts_the_returned_state(name, device):
    mixer = make(name, device)
    assert state_numel(mixer.init_state(B, device=device)) == B * mixer.state_size(0)
    for seq_len in (1, 7, T):
        _, state = mixer(inputs(mixer, seq_len=seq_len))
        assert state_numel(state) == B * mixer.state_size(seq_len), f"{name}: state_size({seq_len})"
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                assert value.shape[0] == B, f"{name}: state {key!r} must lead with the batch dimension"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_is_a_clear_error(name):
    kwargs = dict(TOKEN_MIXERS.entry(name).test_kwargs)
    with pytest.raises(ConfigError, match="not_an_option"):
        mixerlab.create_token_mixer(name, **kwargs, not_an_option=3)


HEADED = [n for n in NAMES if "num_heads" in TOKEN_MIXERS.entry(n).parameters()]


@pytest.mark.parametrize("name", HEADED)
def test_dim_not_divisible_by_heads_is_a_clear_error(name):
    kwargs = {**TOKEN_MIXERS.entry(name).test_kwargs, "dim": 30, "num_heads": 4}
    kwargs.pop("head_dim", None)
    with pytest.raises(ConfigError, match="dim=30"):
        mixerlab.create_token_mixer(name, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_shape_is_a_clear_error(name):
    mixer = make(name)
    with pytest.raises(ConfigError, match="x.shape"):
        mixer(torch.randn(B, 5, mixer.dim + 1, dtype=torch.float64))


def test_bad_mode_is_a_clear_error():
    mixer = make("attention")
    with pytest.raises(ConfigError, match="mode='fastest'"):
        mixer.mode = "fastest"
