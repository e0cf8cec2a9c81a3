"""Models: hybrid schedules, incremental decoding through states == one full forward pass."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.token_mixers.base import state_numel
from mixerlab.registry import TOKEN_MIXERS


def tiny_spec(name):
    return {"name": name, **{k: v for k, v in TOKEN_MIXERS.entry(name).test_kwargs.items() if k != "dim"}}


def hybrid_lm(mixers, depth=None, channel_mixer="swiglu"):
    torch.manual_seed(0)
    return mixerlab.create_model(
        "lm",
        vocab_size=13,
        dim=16,
        depth=depth or len(mixers),
        mixer=[tiny_spec(m) for m in mixers],
        channel_mixer=channel_mixer,
    ).double()


def available(*names):
    return all(n in mixerlab.list_token_mixers() for n in names)


HYBRIDS = [["attention"], ["attention", "sliding_window"]]
if available("gla"):
    HYBRIDS.append(["gla", "gla", "attention"])


@pytest.mark.parametrize("mixers", HYBRIDS, ids=lambda m: "+".join(m))
def test_incremental_decoding_matches_full_forward(mixers):
    model = hybrid_lm(mixers)
    tokens = torch.randint(0, 13, (2, 21), generator=torch.Generator().manual_seed(0))
    full, _ = model(tokens)
    logits, state = model(tokens[:, :8])
    steps = [logits]
    for t in range(8, 21):
        logits, state = model(tokens[:, t : t + 1], state=state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-9, atol=1e-10)
    assert state_numel(state) == 2 * model.state_size(21)


@pytest.mark.parametrize("mixers", HYBRIDS, ids=lambda m: "+".join(m))
def test_generate_equals_greedy_argmax_of_full_forward(mixers):
    model = hybrid_lm(mixers)
    prompt = torch.randint(0, 13, (2, 5), generator=torch.Generator().manual_seed(1))
    out = model.generate(prompt, max_new_tokens=6)
    assert out.shape == (2, 11)
    # Each generated token must be the argmax of a full forward pass over everything before it.
    full, _ = model(out[:, :-1])
    torch.testing.assert_close(out[:, 5:], full[:, 4:].argmax(-1))


def test_hybrid_pattern_repeats_and_bad_lengths_fail():
    model = hybrid_lm(["attention", "sliding_window"], depth=4)
    kinds = [type(m).__name__ for m in model.backbone.mixers]
    assert kinds == ["Attention", "SlidingWindowAttention"] * 2
    with pytest.raises(ConfigError, match="mixer"):
        hybrid_lm(["attention", "sliding_window"], depth=3)


def test_identity_channel_mixer_drops_the_second_sublayer():
    model = hybrid_lm(["attention"], channel_mixer="identity")
    block = model.backbone.blocks[0]
    assert block.channel_mixer is None and block.norm2 is None
    names = [n for n, _ in model.named_parameters()]
    assert not any("norm2" in n for n in names)


def test_lm_trains_a_few_steps():
    torch.manual_seed(0)
    model = mixerlab.create_model(
        "lm", vocab_size=8, dim=16, depth=1, mixer={"name": "attention", "num_heads": 2}
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = torch.arange(8).repeat(4, 3)  # a periodic sequence: easy to predict
    losses = []
    for _ in range(30):
        logits, _ = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 8), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_set_mode_switches_every_mixer_and_rejects_unknown():
    model = hybrid_lm(["attention", "sliding_window"])
    mixerlab.set_mode(model, "reference")
    assert all(m.mode == "reference" for m in model.backbone.mixers)
    with pytest.raises(ConfigError, match="mode"):
        mixerlab.set_mode(model, "warp")
