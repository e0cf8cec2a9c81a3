"""Hugging Face integration: auto classes, generate() from mixerlab's states, offline round trips."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder only: nothing may reach the hub
transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")

from mixerlab.errors import ConfigError  # noqa: E402
from mixerlab.integrations.hf import (  # noqa: E402
    MixerlabConfig,
    MixerlabForCausalLM,
    MixerlabForImageClassification,
    MixerlabForSequenceClassification,
)
from mixerlab.registry import TOKEN_MIXERS  # noqa: E402

VOCAB = 13


def lm(mixer, seed: int = 0) -> MixerlabForCausalLM:
    torch.manual_seed(seed)
    config = MixerlabConfig(model_kwargs={"mixer": mixer, "dim": 16, "depth": 2, "vocab_size": VOCAB})
    return MixerlabForCausalLM(config).eval()


def token_lengths(model) -> list[int]:
    """Records the length of every sequence the mixerlab model is called with."""
    seen: list[int] = []
    model.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    return seen


@pytest.mark.parametrize("mixer", ["gla", {"name": "attention", "num_heads": 2}])
def test_greedy_generate_matches_mixerlab_and_costs_one_step_per_token(mixer):
    model = lm(mixer)
    prompt = torch.randint(0, VOCAB, (2, 7))
    seen = token_lengths(model)
    out = model.generate(prompt, max_new_tokens=9, do_sample=False)
    assert seen == [7] + [1] * 8  # the prompt once, then only the newest token from the state
    assert torch.equal(out, model.model.generate(prompt, 9))


CAUSAL_MIXERS = [e.name for e in TOKEN_MIXERS if getattr(e.builder, "causal", True)]


@pytest.mark.parametrize("name", CAUSAL_MIXERS)
def test_every_causal_mixer_round_trips_and_generates_from_its_state(name, tmp_path):
    """save_pretrained / from_pretrained keep the logits (buffers computed from options included)."""
    entry = TOKEN_MIXERS.entry(name)
    spec = {"name": name, **{k: v for k, v in entry.test_kwargs.items() if k != "dim"}}
    torch.manual_seed(0)
    kwargs = {"mixer": spec, "dim": entry.test_kwargs.get("dim", 16), "depth": 1, "vocab_size": VOCAB}
    model = MixerlabForCausalLM(MixerlabConfig(model_kwargs=kwargs)).eval()
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    prompt = torch.randint(0, VOCAB, (2, 5))
    torch.testing.assert_close(loaded(prompt).logits, model(prompt).logits, rtol=0, atol=0)
    seen = token_lengths(loaded)
    out = loaded.generate(prompt, max_new_tokens=3, do_sample=False)
    assert seen == [5, 1, 1] and torch.equal(out, model.model.generate(prompt, 3))


def test_sampled_generate_matches_mixerlab_with_the_same_seed():
    model = lm("gla", seed=1)
    prompt = torch.randint(0, VOCAB, (3, 5))
    torch.manual_seed(7)
    ours = model.model.generate(prompt, 12, temperature=0.8)
    torch.manual_seed(7)
    theirs = model.generate(prompt, max_new_tokens=12, do_sample=True, temperature=0.8, top_k=0)
    assert torch.equal(ours, theirs)
    torch.manual_seed(8)
    other = model.generate(prompt, max_new_tokens=12, do_sample=True, temperature=0.8, top_k=0)
    assert not torch.equal(other, theirs)  # the seed is what made them equal


def test_causal_lm_round_trips_through_safetensors_by_auto_class(tmp_path):
    model = lm({"name": "attention", "num_heads": 2})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, MixerlabConfig) and config.model_kwargs == model.config.model_kwargs
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is MixerlabForCausalLM
    assert loaded.model.head.weight is loaded.model.stem.weight  # tied again
    x = torch.randint(0, VOCAB, (2, 11))
    torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)
    # The loss of labels is the next-token cross-entropy (shifted inside).
    out = loaded(x, labels=x)
    want = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, want)


def test_sequence_classification_round_trips(tmp_path):
    torch.manual_seed(0)
    kwargs = {"mixer": "gla", "dim": 16, "depth": 1, "vocab_size": VOCAB, "num_classes": 4}
    model = MixerlabForSequenceClassification(MixerlabConfig(model_kwargs=kwargs)).eval()
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is MixerlabForSequenceClassification
    x, y = torch.randint(0, VOCAB, (3, 9)), torch.tensor([0, 3, 1])
    out = loaded(x, labels=y)
    assert out.logits.shape == (3, 4)
    torch.testing.assert_close(out.logits, model(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, y))


def test_image_classification_round_trips(tmp_path):
    torch.manual_seed(0)
    kwargs = {"image_size": 8, "in_chans": 1, "num_classes": 3, "dim": 16, "depth": 1}
    config = MixerlabConfig(model_name="image_classifier", model_kwargs=kwargs)
    model = MixerlabForImageClassification(config).eval()
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is MixerlabForImageClassification
    pixels = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(pixels).logits, model(pixels).logits, rtol=0, atol=0)
    assert loaded(pixels).logits.shape == (2, 3)


def test_bad_specs_and_padding_are_clear_errors():
    with pytest.raises(ConfigError, match="model_name"):
        MixerlabForCausalLM(MixerlabConfig(model_name="nope"))
    model = lm("gla")
    padded = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    with pytest.raises(ConfigError, match="attention_mask"):
        model(torch.ones(2, 4, dtype=torch.long), attention_mask=padded)
    with pytest.raises(ConfigError, match="attention_mask"):
        model.generate(torch.ones(2, 4, dtype=torch.long), attention_mask=padded, max_new_tokens=2)
