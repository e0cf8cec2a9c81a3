"""Packed variable-length batches (``forward_packed``), checked for every registered mixer.

Three documents of different lengths packed into one row ``[1, T_total, D]`` must give, in
float64, the same outputs, input gradients and per-document final states as running each
document alone, also when each document continues from a state; bad offsets are clear errors.
"""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.token_mixers.base import State
from mixerlab.registry import TOKEN_MIXERS

NAMES = mixerlab.list_token_mixers()
LENGTHS = (5, 11, 7)  # different and odd, none a multiple of the test chunk sizes
CU = torch.tensor([0, 5, 16, 23])
TOTAL = 23
# Their reference modes are per-step loops too slow to run here; the contract suite checks them.
SLOW_REFERENCE = {"srwm", "slstm", "pararnn"}


def make(name: str, **overrides) -> mixerlab.TokenMixer:
    torch.manual_seed(0)
    kwargs = {**TOKEN_MIXERS.entry(name).test_kwargs, **overrides}
    mixer = mixerlab.create_token_mixer(name, **kwargs).double()
    with torch.no_grad():  # a zero-initialised weight could hide a path that crosses a boundary
        for p in mixer.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.1)
    return mixer


def tokens(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, TOTAL, dim, generator=g, dtype=torch.float64)


def assert_close(actual, expected, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-7, atol=1e-9, msg=lambda m: f"{what}: {m}")


def assert_states_close(actual: State, expected: State, what: str) -> None:
    assert actual.keys() == expected.keys(), what
    for key in expected:
        if isinstance(expected[key], dict):
            assert_states_close(actual[key], expected[key], f"{what}[{key!r}]")
        else:
            assert_close(actual[key], expected[key], f"{what}[{key!r}]")


def alone(mixer, x: torch.Tensor, g: torch.Tensor, states: list[State] | None):
    """Each document through ``forward`` by itself: outputs, input gradients, final states."""
    ys, dxs, finals = [], [], []
    for i, (doc, g_doc) in enumerate(zip(x.split(LENGTHS, dim=1), g.split(LENGTHS, dim=1))):
        doc = doc.detach().requires_grad_()
        y, state = mixer(doc, state=None if states is None else states[i])
        (dx,) = torch.autograd.grad(y, doc, g_doc)
        ys.append(y)
        dxs.append(dx)
        finals.append(state)
    return torch.cat(ys, dim=1), torch.cat(dxs, dim=1), finals


def _modes(name: str) -> list[str]:
    modes = TOKEN_MIXERS.entry(name).builder.modes
    return [m for m in modes if not (m == "reference" and name in SLOW_REFERENCE)]


CASES = [(name, mode) for name in NAMES for mode in _modes(name)]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_packed_equals_each_document_alone(name, mode):
    mixer = make(name)
    mixer.mode = mode
    x = tokens(mixer.dim, seed=1).requires_grad_()
    if mixer.packed == "none":
        with pytest.raises(ConfigError, match="cu_seqlens"):
            mixer.forward_packed(x, CU)
        return
    g = torch.randn_like(x)
    starts = None
    for call in ("from empty states", "continuing from states"):
        y, finals = mixer.forward_packed(x, CU, states=starts)
        (dx,) = torch.autograd.grad(y, x, g)
        y_ref, dx_ref, finals_ref = alone(mixer, x, g, starts)
        what = f"{name}[{mode}] packed {call}"
        assert y.shape == x.shape
        assert_close(y, y_ref, f"{what}: output")
        assert_close(dx, dx_ref, f"{what}: input gradient")
        assert len(finals) == len(LENGTHS)
        for i, (state, state_ref) in enumerate(zip(finals, finals_ref)):
            assert_states_close(state, state_ref, f"{what}: final state of document {i}")
        starts = [{k: v.detach() if torch.is_tensor(v) else v for k, v in s.items()} for s in finals]


NONCAUSAL = [
    (name, mode)
    for name in NAMES
    if TOKEN_MIXERS.entry(name).builder.noncausal == "native"
    # packed == "none" (image mixers: a packed row is not an image) is checked as an error below
    and TOKEN_MIXERS.entry(name).builder.packed != "none"
    for mode in _modes(name)
]


@pytest.mark.parametrize(("name", "mode"), NONCAUSAL)
def test_noncausal_packed_equals_each_document_alone(name, mode):
    mixer = make(name, causal=False)
    mixer.mode = mode
    x = tokens(mixer.dim, seed=3).requires_grad_()
    g = torch.randn_like(x)
    y, _ = mixer.forward_packed(x, CU)
    (dx,) = torch.autograd.grad(y, x, g)
    y_ref, dx_ref, _ = alone(mixer, x, g, None)
    assert_close(y, y_ref, f"{name}[{mode}] non-causal packed: output")
    assert_close(dx, dx_ref, f"{name}[{mode}] non-causal packed: input gradient")


@pytest.mark.parametrize("name", NAMES)
def test_packed_kind_is_declared(name):
    builder = TOKEN_MIXERS.entry(name).builder
    assert builder.packed in ("native", "split", "none")
    if builder.packed == "none":
        assert builder.packed_reason, f"{name}: packed='none' needs a packed_reason"


def test_packed_none_is_a_clear_error():
    class NoPacking(type(make("lstm"))):
        packed = "none"
        packed_reason = "documented reason"

    mixer = NoPacking(dim=16)
    with pytest.raises(ConfigError, match="cu_seqlens.*documented reason"):
        mixer.forward_packed(torch.randn(1, TOTAL, 16), CU)


BAD = {
    "not starting at 0": (torch.tensor([1, 5, 16, 23]), 1, "cu_seqlens=\\[1, 5, 16, 23\\]"),
    "not ending at T": (torch.tensor([0, 5, 16, 20]), 1, "T_total=23"),
    "decreasing": (torch.tensor([0, 16, 5, 23]), 1, "strictly increasing"),
    "empty document": (torch.tensor([0, 5, 5, 23]), 1, "strictly increasing"),
    "float dtype": (torch.tensor([0.0, 5.0, 16.0, 23.0]), 1, "cu_seqlens.dtype"),
    "2-D": (CU[None], 1, "cu_seqlens.shape"),
    "batch 2": (CU, 2, "\\[1, T_total, D\\]"),
}


@pytest.mark.parametrize("name", ["attention", "mingru", "lstm"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_cu_seqlens_is_a_clear_error(name, case):
    cu_seqlens, batch, message = BAD[case]
    mixer = make(name)
    with pytest.raises(ConfigError, match=message):
        mixer.forward_packed(torch.randn(batch, TOTAL, mixer.dim, dtype=torch.float64), cu_seqlens)


def test_wrong_number_of_states_is_a_clear_error():
    mixer = make("attention")
    with pytest.raises(ConfigError, match="len\\(states\\)=1"):
        mixer.forward_packed(tokens(mixer.dim, 1), CU, states=[mixer.init_state(1)])


def test_backbone_packed_equals_each_document_alone():
    torch.manual_seed(0)
    backbone = mixerlab.Backbone(dim=16, depth=2, mixer=["attention", "mingru"]).double()
    x = tokens(16, seed=2)
    y, state = backbone(x, cu_seqlens=CU)
    assert state.keys() == {"0", "1"} and all(len(state[k]) == len(LENGTHS) for k in state)
    for i, doc in enumerate(x.split(LENGTHS, dim=1)):
        y_doc, state_doc = backbone(doc)
        a = int(CU[i])
        assert_close(y[:, a : a + doc.shape[1]], y_doc, f"backbone output of document {i}")
        for layer in state_doc:
            assert_states_close(state[layer][i], state_doc[layer], f"backbone layer {layer} document {i}")
    with pytest.raises(ConfigError, match="mask"):
        backbone(x, cu_seqlens=CU, mask=torch.ones(1, TOTAL, dtype=torch.bool))
