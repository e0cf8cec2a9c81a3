"""Pieces shared by the synthetic tasks: the train-short / test-long split and index sampling.

Shapes: sampled indices ``[N, k]`` int64; examples ``inputs, targets: [N, T]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.tasks.base import Task, TaskData, check_int_list, generator


def sample_without_replacement(num: int, population: int, k: int, g: torch.Generator) -> Tensor:
    """``[num, k]`` distinct indices in ``[0, population)`` per row, uniformly."""
    return torch.rand(num, population, generator=g).argsort(dim=1)[:, :k]


class LengthSplitTask(Task):
    """A task trained at ``seq_len`` and evaluated at each of ``test_seq_lens``.

    Subclasses set ``owner`` (their registry name: it names them in configuration errors and salts
    their data generators) and implement ``_examples``; the training set and each evaluation length
    draw from generators of their own, so adding a test length leaves the other sets unchanged.
    """

    owner: ClassVar[str]
    num_train: int
    num_test: int
    seq_len: int
    test_seq_lens: list[int]

    def _check_vocab(self, vocab_size: Any, minimum: int) -> None:
        check(
            isinstance(vocab_size, int) and vocab_size >= minimum,
            self.owner,
            "vocab_size",
            vocab_size,
            f"expected >= {minimum}",
        )
        self.vocab_size = vocab_size

    def _check_sizes(self, num_train: Any, num_test: Any) -> None:
        check_positive_int(self.owner, "num_train", num_train)
        check_positive_int(self.owner, "num_test", num_test)
        self.num_train, self.num_test = num_train, num_test

    def _check_lengths(
        self, seq_len: Any, test_seq_lens: Any, *, test_multiples: Sequence[int] = (1,), minimum: int = 1
    ) -> None:
        """``test_seq_lens`` defaults to ``seq_len`` times each of ``test_multiples``."""
        self.seq_len = check_int_list(self.owner, "seq_len", seq_len, minimum)[0]
        default = [m * self.seq_len for m in test_multiples]
        self.test_seq_lens = check_int_list(self.owner, "test_seq_lens", test_seq_lens or default, minimum)

    @property
    def train_seq_len(self) -> int:
        return self.seq_len

    @property
    def eval_seq_lens(self) -> list[int]:
        return list(self.test_seq_lens)

    def _examples(self, num: int, seq_len: int, g: torch.Generator) -> TaskData:
        raise NotImplementedError

    def train_data(self, seed: int) -> TaskData:
        return self._examples(self.num_train, self.seq_len, generator(seed, self.owner, "train"))

    def eval_data(self, seed: int) -> list[TaskData]:
        return [
            self._examples(self.num_test, L, generator(seed, self.owner, "test", L))
            for L in self.test_seq_lens
        ]
