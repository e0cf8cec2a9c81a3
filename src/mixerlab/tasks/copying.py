"""Selective copying (``selective_copy``): copy data tokens scattered among noise, in order.

Shapes: ``inputs, targets: [N, L + M]`` for a region of length ``L`` holding ``M`` data tokens.
"""

from __future__ import annotations

import torch

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import IGNORE, Task, TaskData, check_int_list, generator
from mixerlab.tasks.recall import sample_without_replacement


@TASKS.register(
    "selective_copy",
    paper="Mamba: Linear-Time Sequence Modeling with Selective State Spaces (selective copying)",
    arxiv="2312.00752",
    test_kwargs={"vocab_size": 8, "seq_len": 24, "num_tokens": 4, "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "seq_len"},
)
class SelectiveCopy(Task):
    """Selective copying, "Mamba" (arXiv:2312.00752), Section 3.1 / Figure 2.

    Token 0 is noise, token ``V-1`` is the copy marker and data tokens are ``[1, V-1)``. The
    first ``seq_len - num_tokens`` positions hold ``num_tokens`` data tokens at random sorted
    positions among noise; ``num_tokens`` markers follow, and at the ``i``-th marker the target is
    the ``i``-th data token. The spacing is random, so a time-invariant convolution cannot solve it.
    ``test_seq_lens`` longer than ``seq_len`` tests copying across longer noise.
    """

    def __init__(
        self,
        vocab_size: int = 16,
        seq_len: int = 64,
        num_tokens: int = 8,
        test_seq_lens: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 500,
    ) -> None:
        owner = "selective_copy"
        check(
            isinstance(vocab_size, int) and vocab_size >= 3, owner, "vocab_size", vocab_size, "expected >= 3"
        )
        check_positive_int(owner, "num_tokens", num_tokens)
        check_positive_int(owner, "num_train", num_train)
        check_positive_int(owner, "num_test", num_test)
        self.vocab_size, self.num_tokens = vocab_size, num_tokens
        self.num_train, self.num_test = num_train, num_test
        self.seq_len = check_int_list(owner, "seq_len", seq_len)[0]
        self.test_seq_lens = check_int_list(owner, "test_seq_lens", test_seq_lens or [self.seq_len])
        for field_name, L in [("seq_len", self.seq_len)] + [("test_seq_lens", L) for L in self.test_seq_lens]:
            check(
                3 * num_tokens <= L,
                owner,
                field_name,
                L,
                f"expected >= 3 * num_tokens = {3 * num_tokens} (room for {num_tokens} data tokens among "
                f"noise plus {num_tokens} markers)",
            )

    @property
    def train_seq_len(self) -> int:
        return self.seq_len

    @property
    def eval_seq_lens(self) -> list[int]:
        return list(self.test_seq_lens)

    def _examples(self, num: int, seq_len: int, g: torch.Generator) -> TaskData:
        M, region = self.num_tokens, seq_len - self.num_tokens
        tokens = torch.randint(1, self.vocab_size - 1, (num, M), generator=g)
        positions = sample_without_replacement(num, region, M, g).sort(dim=1).values
        inputs = torch.zeros(num, seq_len, dtype=torch.long)
        inputs.scatter_(1, positions, tokens)
        inputs[:, region:] = self.vocab_size - 1
        targets = torch.full_like(inputs, IGNORE)
        targets[:, region:] = tokens
        return TaskData(inputs, targets, {"seq_len": torch.full((num,), seq_len, dtype=torch.long)})

    def train_data(self, seed: int) -> TaskData:
        return self._examples(self.num_train, self.seq_len, generator(seed, "selective_copy", "train"))

    def eval_data(self, seed: int) -> list[TaskData]:
        return [
            self._examples(self.num_test, L, generator(seed, "selective_copy", "test", L))
            for L in self.test_seq_lens
        ]
