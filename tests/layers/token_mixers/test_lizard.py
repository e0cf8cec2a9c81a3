"""Lizard specifics (arXiv:2507.09025): the softmax branch against the library's own attention
mixers, the meta memory, the linear branch and the bounded state."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _lizard(**options):
    torch.manual_seed(0)
    base = {"dim": 16, "num_heads": 2, "window": 4, "num_meta": 2, "chunk_size": 8}
    return mixerlab.create_token_mixer("lizard", **{**base, **options}).double()


def _softmax_only(lizard):
    """Switch the linear branch off: ``alpha = 0``, ``beta = 1``."""
    with torch.no_grad():
        lizard.alpha.zero_()
        lizard.beta.fill_(1.0)
    return lizard


def _attention_weights(lizard):
    return {
        k: v for k, v in lizard.state_dict().items() if k.split(".")[0] in ("q_proj", "kv_proj", "o_proj")
    }


@pytest.mark.parametrize("mode", ["chunk", "reference"])
def test_without_meta_memory_the_softmax_branch_is_sliding_window_attention(mode):
    lizard = _softmax_only(_lizard(num_meta=0))
    swa = mixerlab.create_token_mixer("sliding_window", dim=16, num_heads=2, window=4).double()
    swa.load_state_dict(_attention_weights(lizard))
    lizard.mode = mode
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    torch.testing.assert_close(lizard(x)[0], swa(x)[0])


def test_a_window_covering_the_sequence_is_full_causal_attention():
    lizard = _softmax_only(_lizard(window=32, num_meta=3))
    attn = mixerlab.create_token_mixer("attention", dim=16, num_heads=2).double()
    attn.load_state_dict(_attention_weights(lizard))
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    torch.testing.assert_close(lizard(x)[0], attn(x)[0])


@pytest.mark.parametrize(("num_meta", "reaches"), [(0, False), (2, True)])
def test_meta_memory_keeps_the_first_tokens_in_sight(num_meta, reaches):
    lizard = _softmax_only(_lizard(num_meta=num_meta))
    x = torch.randn(1, 20, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 0] += 1.0  # far outside the window of the last positions
    late = slice(12, None)
    changed = not torch.allclose(lizard(x)[0][:, late], lizard(x2)[0][:, late])
    assert changed == reaches


def test_linear_branch_carries_what_left_the_window():
    lizard = _lizard(num_meta=0)
    x = torch.randn(1, 20, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(lizard(x)[0][:, -1], lizard(x2)[0][:, -1])


def test_state_stops_growing_after_meta_memory_and_window():
    lizard = _lizard(window=4, num_meta=2)
    sizes = [lizard.state_size(t) for t in (0, 1, 2, 5, 6, 100, 10_000)]
    fixed = 2 * 2 * 8 * 8  # H 2F K
    assert sizes[0] == fixed
    assert sizes[4] == sizes[5] == sizes[6] == fixed + 2 * (2 + 3) * 2 * 8
    _, state = lizard(torch.randn(1, 30, 16, dtype=torch.float64))
    assert state["meta_k"].shape[1] == 2 and state["k"].shape[1] == 3


def test_decoding_far_past_the_window_matches_one_call():
    lizard = _lizard(window=3, num_meta=2)
    x = torch.randn(1, 40, 16, dtype=torch.float64)
    y_full, _ = lizard(x)
    _, state = lizard(x[:, :30])
    steps = []
    for t in range(30, 40):
        y, state = lizard(x[:, t : t + 1], state=state)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, dim=1), y_full[:, 30:])


@pytest.mark.parametrize(("field", "value"), [("num_meta", -1), ("window", 0), ("feature_dim", 0)])
def test_bad_options_are_clear_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        _lizard(**{field: value})
