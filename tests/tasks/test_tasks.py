"""Task generators: labels are correct, data is a function of the seed, bad settings are ConfigErrors."""

from __future__ import annotations

import math

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.registry import TASKS
from mixerlab.tasks import create_task
from mixerlab.tasks.base import IGNORE, TaskData
from mixerlab.train.evaluate import evaluate

# Token tasks (kind next_token); the other kinds have their own tests (test_real_data.py).
ALL = [entry.name for entry in TASKS if entry.builder.kind == "next_token"]


def tiny(name, **overrides):
    return create_task(name, **{**TASKS.entry(name).test_kwargs, **overrides})


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_data_and_valid_tokens(name):
    task = tiny(name)
    a, b = task.train_data(3), task.train_data(3)
    torch.testing.assert_close(a.inputs, b.inputs)
    torch.testing.assert_close(a.targets, b.targets)
    for part, again in zip(task.eval_data(3), task.eval_data(3)):
        torch.testing.assert_close(part.inputs, again.inputs)
        torch.testing.assert_close(part.targets, again.targets)
    for data in [a, *task.eval_data(3)]:
        assert data.inputs.dtype == torch.long and data.targets.dtype == torch.long
        assert int(data.inputs.min()) >= 0 and int(data.inputs.max()) < task.vocab_size
        scored = data.targets[data.targets != IGNORE]
        assert scored.numel() > 0
        assert int(scored.min()) >= 0 and int(scored.max()) < task.vocab_size


@pytest.mark.parametrize("name", ALL)
def test_different_seeds_different_training_data(name):
    task = tiny(name)
    assert not torch.equal(task.train_data(0).inputs, task.train_data(1).inputs)


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_is_a_config_error_naming_it(name):
    with pytest.raises(ConfigError, match="no_such_option"):
        create_task(name, no_such_option=1)


def _check_mqar(data: TaskData, vocab_size: int) -> int:
    half = vocab_size // 2
    checked = 0
    for inputs, targets, kv in zip(data.inputs, data.targets, data.slices["num_kv_pairs"]):
        kv = int(kv)
        keys, values = inputs[0 : 2 * kv : 2], inputs[1 : 2 * kv : 2]
        assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < vocab_size)).all()
        assert len(set(keys.tolist())) == kv
        binding = dict(zip(keys.tolist(), values.tolist()))
        positions = (targets != IGNORE).nonzero().flatten()
        assert len(positions) == kv  # every key is queried exactly once
        assert (positions >= 2 * kv).all()
        for pos in positions.tolist():
            assert binding[int(inputs[pos])] == int(targets[pos])
            checked += 1
        assert sorted(inputs[positions].tolist()) == sorted(keys.tolist())
    return checked


def test_mqar_every_query_is_labelled_with_the_value_bound_to_its_key():
    task = create_task(
        "mqar", vocab_size=64, seq_len=64, num_kv_pairs=[4, 8, 16], test_seq_lens=[64, 128], num_train=60
    )
    assert _check_mqar(task.train_data(0), 64) == 20 * (4 + 8 + 16)
    for part in task.eval_data(0):
        assert _check_mqar(part, 64) > 0
    lens = {int(p.seq_len) for p in task.eval_data(0)}
    assert lens == {64, 128}


def test_mqar_gaps_follow_a_power_law_short_gaps_more_likely():
    task = create_task("mqar", vocab_size=256, seq_len=256, num_kv_pairs=4, num_train=400, power_a=0.01)
    data = task.train_data(0)
    offsets = ((data.targets != IGNORE).nonzero()[:, 1] - 8) // 2
    space = (256 - 8) // 2
    assert (offsets < space // 4).float().mean() > 0.5  # uniform would give ~0.25


@pytest.mark.parametrize(
    "options, field",
    [
        ({"seq_len": 32, "num_kv_pairs": 9}, "num_kv_pairs"),
        ({"seq_len": 64, "num_kv_pairs": 4, "test_num_kv_pairs": [4, 32]}, "test_num_kv_pairs"),
        ({"vocab_size": 16, "seq_len": 64, "num_kv_pairs": 8}, "num_kv_pairs"),
        ({"seq_len": 33}, "seq_len"),
        ({"power_a": 2.0}, "power_a"),
    ],
)
def test_mqar_impossible_settings_are_config_errors(options, field):
    with pytest.raises(ConfigError, match=field):
        create_task("mqar", **options)


def test_parity_labels_are_prefix_xor():
    task = create_task("parity", seq_len=12, test_seq_lens=[12, 40], num_train=50)
    for data in [task.train_data(0), *task.eval_data(0)]:
        for bits, targets in zip(data.inputs.tolist(), data.targets.tolist()):
            acc = 0
            for bit, target in zip(bits, targets):
                acc ^= bit
                assert target == acc
    last = create_task("parity", seq_len=10, num_train=50, labels="last").train_data(0)
    assert ((last.targets != IGNORE).sum(1) == 1).all()
    torch.testing.assert_close(last.targets[:, -1], last.inputs.sum(1) % 2)


def test_modular_arithmetic_labels_evaluate_left_to_right():
    task = create_task("modular_arithmetic", modulus=7, ops=["+", "-", "*"], seq_len=11, num_train=50)
    data = task.train_data(0)
    ops = {7: lambda a, b: (a + b) % 7, 8: lambda a, b: (a - b) % 7, 9: lambda a, b: (a * b) % 7}
    for tokens, targets in zip(data.inputs.tolist(), data.targets.tolist()):
        acc = tokens[0]
        assert targets[0] == acc
        for i in range(1, len(tokens) - 1, 2):
            acc = ops[tokens[i]](acc, tokens[i + 1])
            assert targets[i] == IGNORE and targets[i + 1] == acc


def test_selective_copy_targets_are_the_data_tokens_in_order():
    task = create_task("selective_copy", vocab_size=10, seq_len=30, num_tokens=5, num_train=40)
    data = task.train_data(0)
    for tokens, targets in zip(data.inputs.tolist(), data.targets.tolist()):
        region = tokens[:25]
        assert [t for t in region if t != 0] == targets[25:]
        assert tokens[25:] == [9] * 5 and all(t == IGNORE for t in targets[:25])
    with pytest.raises(ConfigError, match="seq_len"):
        create_task("selective_copy", seq_len=10, num_tokens=5)


def test_induction_target_is_the_token_after_the_earlier_trigger():
    task = create_task("induction", vocab_size=12, seq_len=20, num_train=50)
    data = task.train_data(0)
    for tokens, targets in zip(data.inputs.tolist(), data.targets.tolist()):
        trigger = 11
        assert tokens[-1] == trigger and tokens[:-1].count(trigger) == 1
        assert targets[-1] == tokens[tokens.index(trigger) + 1]
        assert all(t == IGNORE for t in targets[:-1])


def test_sequential_digits_label_at_last_pixel_and_split_disjoint():
    task = create_task("sequential_digits")
    train, (test,) = task.train_data(0), task.eval_data(0)
    assert train.inputs.shape[1] == 64 and len(train) + len(test) == 1797
    assert ((train.targets != IGNORE).sum(1) == 1).all() and (train.targets[:, -1] < 10).all()
    rows = {tuple(r) for r in train.inputs.tolist()}
    overlap = sum(tuple(r) in rows for r in test.inputs.tolist())
    assert overlap < 0.05 * len(test)  # only the rare duplicate images of the dataset itself


class Oracle(torch.nn.Module):
    """Logits that put all mass on the target (or a wrong token for every ``wrong``-th example)."""

    def __init__(self, data: list[TaskData], vocab_size: int, wrong_kv: int | None = None):
        super().__init__()
        self.lookup = {tuple(d.tolist()): t for part in data for d, t in zip(part.inputs, part.targets)}
        self.kv = {
            tuple(d.tolist()): int(k)
            for part in data
            for d, k in zip(
                part.inputs, part.slices.get("num_kv_pairs", torch.zeros(len(part), dtype=torch.long))
            )
        }
        self.vocab_size, self.wrong_kv = vocab_size, wrong_kv

    def forward(self, tokens):
        out = []
        for row in tokens:
            target = self.lookup[tuple(row.tolist())].clamp_min(0)
            if self.wrong_kv is not None and self.kv[tuple(row.tolist())] == self.wrong_kv:
                target = (target + 1) % self.vocab_size
            out.append(torch.nn.functional.one_hot(target, self.vocab_size).float() * 50)
        return torch.stack(out), {}


def test_evaluate_reports_overall_and_per_slice():
    task = create_task("mqar", vocab_size=32, seq_len=32, num_kv_pairs=[2, 4], num_test=10)
    data = task.eval_data(0)
    perfect = evaluate(Oracle(data, 32), task, data, batch_size=7)
    assert perfect.value == 1.0 and perfect.slices["num_kv_pairs"] == {"2": 1.0, "4": 1.0}
    half = evaluate(Oracle(data, 32, wrong_kv=4), task, data)
    assert half.slices["num_kv_pairs"] == {"2": 1.0, "4": 0.0}
    assert half.value == pytest.approx(2 / 6)  # 2 of every 6 queries come from 2-pair examples


def test_char_lm_bits_per_char_of_a_uniform_model_is_log2_vocab():
    task = tiny("char_lm")
    data = task.eval_data(0)

    class Uniform(torch.nn.Module):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, task.vocab_size), {}

    metrics = evaluate(Uniform(), task, data)
    assert metrics.name == "bits_per_char" and not metrics.higher_is_better
    assert metrics.value == pytest.approx(math.log2(task.vocab_size))
    text = data[0].inputs.flatten().tolist()
    assert sum(32 <= c < 127 or c == 10 for c in text) > 0.95 * len(text)  # real English text
