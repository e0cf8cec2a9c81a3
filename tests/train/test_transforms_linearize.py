"""Linearisation: the new layers start as the teacher inside the window, keep a constant decoding
state while the attention teacher's grows, decode step by step as they run whole, and train."""

from __future__ import annotations

import copy

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.layers.token_mixers.base import state_numel
from mixerlab.layers.token_mixers.lizard import Lizard
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.config import ModelConfig
from mixerlab.train.trainer import build_model
from mixerlab.train.transforms import create_transform
from mixerlab.train.transforms.linearize import LinearizedAttention, linearized_from


def lm(mixer: dict | str = "attention"):
    torch.manual_seed(0)
    return build_model(ModelConfig(name="lm", dim=16, depth=2, mixer=mixer), 11)


@pytest.mark.parametrize("mixer", ["gla", "linear_attention", "lizard"])
def test_the_new_layer_is_the_teacher_within_its_window(mixer):
    torch.manual_seed(0)
    attention = Attention(dim=16, num_heads=4, num_kv_heads=2)
    hybrid = linearized_from(attention, mixer, window=8, feature_map="elu+1")
    x = torch.randn(2, 8, 16)
    # The linear branch's gate starts at zero, and a window as long as the input is full attention.
    torch.testing.assert_close(hybrid(x)[0], attention(x)[0])


@pytest.mark.parametrize("mixer", ["gla", "linear_attention", "lizard"])
def test_decoding_state_stays_constant_while_the_teachers_grows(mixer):
    teacher = lm()
    transform, _ = create_transform(
        {"name": "linearize", "options": {"mixer": mixer, "window": 4, "match_steps": 0, "finetune_steps": 0}}
    )
    student, _ = transform.apply(copy.deepcopy(teacher))
    expected = Lizard if mixer == "lizard" else LinearizedAttention
    assert all(isinstance(b.mixer, expected) for b in student.backbone.blocks)
    sizes = {}
    for T in (8, 16, 40):
        tokens = torch.randint(0, 11, (2, T))
        _, teacher_state = teacher(tokens)
        _, state = student(tokens)
        assert state_numel(state) // 2 == student.state_size(T)
        assert state_numel(teacher_state) // 2 == teacher.state_size(T)
        sizes[T] = (student.state_size(T), teacher.state_size(T))
    assert sizes[8][0] == sizes[16][0] == sizes[40][0]
    assert sizes[8][1] < sizes[16][1] < sizes[40][1]


def test_linearised_model_decodes_token_by_token_as_it_runs_whole():
    transform, _ = create_transform(
        {"name": "linearize", "options": {"window": 4, "match_steps": 0, "finetune_steps": 0}}
    )
    student, _ = transform.apply(lm())
    with torch.no_grad():
        for block in student.backbone.blocks:
            block.mixer.gate.fill_(0.5)  # both branches contribute
    tokens = torch.randint(0, 11, (2, 13))
    whole, _ = student(tokens)
    logits, state = student(tokens[:, :5])
    steps = [logits]
    for t in range(5, 13):
        logits, state = student(tokens[:, t : t + 1], state=state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-4, atol=1e-4)


def test_linearize_after_training_an_lm_through_the_trainer():
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "char_lm", "options": {"seq_len": 24, "num_train": 64, "max_test_chars": 512}},
            "model": {"name": "lm", "dim": 16, "depth": 1, "mixer": {"name": "attention", "num_heads": 2}},
            "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3},
            "transforms": [
                {
                    "name": "linearize",
                    "options": {"window": 8, "match_steps": 3, "finetune_steps": 2, "batch_size": 8},
                }
            ],
        },
    )
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    facts = result.transforms[0]
    assert result.status == "finished" and facts["metric_before"] is not None
    assert facts["state_size"] == facts["state_size_4x"] < facts["state_size_teacher_4x"]
    assert facts["match_loss_last"] == facts["match_loss_last"]  # finite: training ran
    assert facts["bytes"] > 0 and result.metrics.value == result.metrics.value


def test_linearize_needs_causal_attention():
    with pytest.raises(ConfigError, match="attention"):
        create_transform({"name": "linearize"})[0].apply(lm("gla"))
    with pytest.raises(ConfigError, match="mixer"):
        create_transform({"name": "linearize", "options": {"mixer": "mamba"}})


def test_lizard_target_decodes_token_by_token_as_it_runs_whole():
    transform, _ = create_transform(
        {
            "name": "linearize",
            "options": {"mixer": "lizard", "window": 3, "match_steps": 0, "finetune_steps": 0},
        }
    )
    student, _ = transform.apply(lm())
    with torch.no_grad():
        for block in student.backbone.blocks:
            block.mixer.alpha.fill_(0.5)  # both branches contribute
    tokens = torch.randint(0, 11, (2, 13))
    whole, _ = student(tokens)
    logits, state = student(tokens[:, :5])
    steps = [logits]
    for t in range(5, 13):
        logits, state = student(tokens[:, t : t + 1], state=state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-4, atol=1e-4)
