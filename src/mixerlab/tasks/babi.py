"""Generated bAbI-style question answering (``babi``): where is an entity after a story of moves?

Shapes: ``inputs = {"story": [N, S, W], "question": [N, W]}`` int64 token ids (``0`` pads),
``targets: [N]`` the answer place, a class in ``[0, num_places)``.
"""

from __future__ import annotations

from typing import Any

import torch

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import Task, TaskData, generator

# Function words after the entity and place names; sentences are "<entity> went to <place>" and
# the question "where is <entity>" (both padded to ``SENTENCE_WIDTH`` words).
WORDS = ("went", "to", "where", "is")
SENTENCE_WIDTH = 4


@TASKS.register(
    "babi",
    paper="Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks (bAbI task 1)",
    arxiv="1502.05698",
    test_kwargs={"num_entities": 3, "num_places": 4, "num_sentences": 6, "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "distance"},
)
class BabiWhereIs(Task):
    """bAbI task 1 "single supporting fact" (arXiv:1502.05698), generated, as End-to-End Memory
    Networks (arXiv:1503.08895) train on it.

    A story is ``num_sentences`` sentences "<entity> went to <place>" with entities and places
    drawn uniformly; the question "where is <entity>?" asks about an entity the story moves, and
    the answer is the place of its *last* move (the one supporting fact; earlier moves of the same
    entity are distractors). The slice ``distance`` is how many sentences back the supporting fact
    is (0 = the last sentence), so recall at a distance is reported separately. Token ids: 0 pads,
    then the entities, the places and :data:`WORDS`.
    """

    kind = "classify"
    owner = "babi"

    def __init__(
        self,
        num_entities: int = 4,
        num_places: int = 6,
        num_sentences: int = 10,
        num_train: int = 5000,
        num_test: int = 1000,
    ) -> None:
        for name, value in (
            ("num_entities", num_entities),
            ("num_places", num_places),
            ("num_sentences", num_sentences),
            ("num_train", num_train),
            ("num_test", num_test),
        ):
            check_positive_int(self.owner, name, value)
        check(num_places >= 2, self.owner, "num_places", num_places, "expected >= 2")
        self.num_entities, self.num_places, self.num_sentences = num_entities, num_places, num_sentences
        self.num_train, self.num_test = num_train, num_test
        self.vocab_size = 1 + num_entities + num_places + len(WORDS)

    def token(self, word: str) -> int:
        """The id of a function word of :data:`WORDS`."""
        return 1 + self.num_entities + self.num_places + WORDS.index(word)

    def model_io(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "num_classes": self.num_places}

    @property
    def train_seq_len(self) -> int:
        return self.num_sentences  # one memory per sentence

    def train_data(self, seed: int) -> TaskData:
        return self._examples(self.num_train, generator(seed, self.owner, "train"))

    def val_data(self, seed: int) -> TaskData:
        return self._examples(self.num_test, generator(seed, self.owner, "val"))

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._examples(self.num_test, generator(seed, self.owner, "test"))]

    def _examples(self, num: int, g: torch.Generator) -> TaskData:
        S = self.num_sentences
        who = torch.randint(0, self.num_entities, (num, S), generator=g)
        where = torch.randint(0, self.num_places, (num, S), generator=g)
        # The question asks about the entity of a uniformly drawn sentence (so it was moved).
        asked = who.gather(1, torch.randint(0, S, (num, 1), generator=g)).squeeze(1)
        moves = who == asked[:, None]
        last = (moves * torch.arange(1, S + 1)).argmax(dim=1)  # the last sentence moving ``asked``
        answer = where.gather(1, last[:, None]).squeeze(1)

        story = torch.zeros(num, S, SENTENCE_WIDTH, dtype=torch.long)
        story[..., 0] = 1 + who
        story[..., 1] = self.token("went")
        story[..., 2] = self.token("to")
        story[..., 3] = 1 + self.num_entities + where
        question = torch.zeros(num, SENTENCE_WIDTH, dtype=torch.long)
        question[:, 0] = self.token("where")
        question[:, 1] = self.token("is")
        question[:, 2] = 1 + asked
        return TaskData(
            inputs={"story": story, "question": question},
            targets=answer,
            slices={"distance": S - 1 - last},
        )
