"""A generated click-through task: a user's behaviour history, a candidate item, a click label.

Shapes: ``inputs = {"candidate": [N] int64, "history": [N, L] int64}`` with items ``1..num_items``
and ``0`` for padding after a history's end; ``targets: [N]`` int64 (1 = click), slices
``{"label": [N], "relevant": [N]}`` (how many history items share the candidate's interest group).

Items fall into ``num_groups`` interest groups (item ``i`` in group ``(i - 1) % num_groups``). A
user follows one or two groups: each behaviour is an item of a followed group, or with probability
``noise`` any item. The candidate is an item of a followed group or any item, half and half. The
user clicks when at least ``min_relevant`` behaviours share the candidate's group, so the label
depends on how much of the history is relevant to the candidate (a count, which attention
weights normalised to sum to one could not tell from a single relevant behaviour). Everything is
drawn from the data seed; rows are split into train / validation / test as the tables are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import Task, TaskData, generator
from mixerlab.tasks.tables import TEST_FRACTION, VAL_FRACTION, check_fractions, shuffled_split


@TASKS.register(
    "ctr",
    paper="Generated click-through data after Deep Interest Network (users' interests, candidate ads)",
    test_kwargs={"num_examples": 200},
    meta={"metric": "accuracy", "slices": "label"},
)
class ClickThrough(Task):
    """Generated click-through rate task (after DIN, arXiv:1706.06978): does the user click the candidate?"""

    kind = "classify"
    objective = "cross_entropy"
    owner = "ctr"

    def __init__(
        self,
        num_examples: int = 4000,
        num_items: int = 60,
        num_groups: int = 6,
        history_len: int = 12,
        min_history: int = 3,
        min_relevant: int = 2,
        noise: float = 0.2,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
    ) -> None:
        for name, value in (
            ("num_examples", num_examples),
            ("num_items", num_items),
            ("num_groups", num_groups),
            ("history_len", history_len),
            ("min_history", min_history),
            ("min_relevant", min_relevant),
        ):
            check_positive_int(self.owner, name, value)
        check(num_examples >= 20, self.owner, "num_examples", num_examples, "expected >= 20 rows")
        check(
            2 <= num_groups <= num_items,
            self.owner,
            "num_groups",
            num_groups,
            f"expected 2 <= num_groups <= num_items={num_items}",
        )
        check(
            min_history <= history_len,
            self.owner,
            "min_history",
            min_history,
            f"expected <= history_len={history_len}",
        )
        check(
            min_relevant <= history_len,
            self.owner,
            "min_relevant",
            min_relevant,
            f"expected <= history_len={history_len} (else no user ever clicks)",
        )
        check(0 <= noise < 1, self.owner, "noise", noise, "expected a probability in [0, 1)")
        check_fractions(self.owner, val_fraction, test_fraction)
        self.num_examples, self.num_items, self.num_groups = num_examples, num_items, num_groups
        self.history_len, self.min_history, self.min_relevant = history_len, min_history, min_relevant
        self.noise, self.val_fraction, self.test_fraction = noise, val_fraction, test_fraction
        self.num_classes = 2

    def model_io(self) -> dict[str, Any]:
        # Item ids 1..num_items plus the padding id 0.
        return {"vocab_size": self.num_items + 1, "num_classes": 2}

    @property
    def train_seq_len(self) -> int:
        return self.history_len

    def group_of(self, items: Tensor) -> Tensor:
        """Interest group of item ids ``1..num_items`` (``-1`` for the padding id 0)."""
        return torch.where(items > 0, (items - 1) % self.num_groups, -1)

    def _random_item_of(self, groups: Tensor, g: torch.Generator) -> Tensor:
        """A uniformly drawn item of each group in ``groups`` (any shape)."""
        per_group = -(-(self.num_items - groups) // self.num_groups)  # items i with (i - 1) % G == g
        slot = (torch.rand(groups.shape, generator=g) * per_group).long()
        return groups + 1 + slot * self.num_groups

    def _table(self, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = generator(seed, self.owner, "table")
        n, length = self.num_examples, self.history_len
        follows = torch.randint(self.num_groups, (n, 2), generator=g)
        two = torch.rand(n, generator=g) < 0.5
        follows[:, 1] = torch.where(two, follows[:, 1], follows[:, 0])
        pick = torch.randint(2, (n, length), generator=g)
        history = self._random_item_of(follows.gather(1, pick), g)
        noisy = torch.rand(n, length, generator=g) < self.noise
        history = torch.where(noisy, torch.randint(1, self.num_items + 1, (n, length), generator=g), history)
        lengths = torch.randint(self.min_history, length + 1, (n,), generator=g)
        history = torch.where(torch.arange(length)[None, :] < lengths[:, None], history, 0)
        followed = self._random_item_of(follows[torch.arange(n), torch.randint(2, (n,), generator=g)], g)
        anything = torch.randint(1, self.num_items + 1, (n,), generator=g)
        candidate = torch.where(torch.rand(n, generator=g) < 0.5, followed, anything)
        relevant = (self.group_of(history) == self.group_of(candidate)[:, None]).sum(1)
        return candidate, history, (relevant >= self.min_relevant).long(), relevant

    def _split(self, seed: int, split: str) -> TaskData:
        candidate, history, labels, relevant = self._table(seed)
        rows = shuffled_split(self.num_examples, seed, self.owner, self.val_fraction, self.test_fraction)[
            split
        ]
        return TaskData(
            {"candidate": candidate[rows], "history": history[rows]},
            labels[rows],
            {"label": labels[rows], "relevant": relevant[rows].clamp_max(self.min_relevant + 1)},
        )

    def train_data(self, seed: int) -> TaskData:
        return self._split(seed, "train")

    def val_data(self, seed: int) -> TaskData:
        return self._split(seed, "val")

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._split(seed, "test")]
