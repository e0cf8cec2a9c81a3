"""babi: deterministic stories whose answer is the place of the asked entity's last move."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.tasks.babi import SENTENCE_WIDTH


def test_babi_answer_is_the_last_move_of_the_asked_entity():
    task = mixerlab.create_task("babi", num_entities=3, num_places=5, num_sentences=7, num_train=40)
    data = task.train_data(seed=2)
    story, question = data.inputs["story"], data.inputs["question"]
    assert story.shape == (40, 7, SENTENCE_WIDTH) and question.shape == (40, SENTENCE_WIDTH)
    assert task.kind == "classify" and task.model_io() == {"vocab_size": task.vocab_size, "num_classes": 5}
    for n in range(40):
        asked = int(question[n, 2])
        # Read the story forward, as a person would: the latest sentence about the entity wins.
        place = None
        last = None
        for i in range(7):
            if int(story[n, i, 0]) == asked:
                place, last = int(story[n, i, 3]) - 1 - task.num_entities, i
        assert place is not None, "the question asks about an entity the story moves"
        assert int(data.targets[n]) == place
        assert int(data.slices["distance"][n]) == 6 - last
    assert int(story.max()) < task.vocab_size and int(data.targets.max()) < 5


def test_babi_is_deterministic_from_its_seed_and_puts_facts_at_a_distance():
    task = mixerlab.create_task("babi", num_sentences=9, num_train=300)
    a, b, c = task.train_data(0), task.train_data(0), task.train_data(1)
    assert torch.equal(a.inputs["story"], b.inputs["story"]) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs["story"], c.inputs["story"])
    assert not torch.equal(task.eval_data(0)[0].inputs["story"], a.inputs["story"][: task.num_test])
    assert int(a.slices["distance"].max()) >= 4  # some supporting facts lie far back


def test_babi_rejects_bad_options():
    with pytest.raises(ConfigError, match="num_places"):
        mixerlab.create_task("babi", num_places=1)
    with pytest.raises(ConfigError, match="num_sentences"):
        mixerlab.create_task("babi", num_sentences=0)
