"""Selective copying (``selective_copy``): copy data tokens scattered among noise, in order.

Shapes: ``inputs, targets: [N, L + M]`` for a region of length ``L`` holding ``M`` data tokens.
"""

from __future__ import annotations

import torch

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import IGNORE, TaskData
from mixerlab.tasks.synthetic import LengthSplitTask, sample_without_replacement


@TASKS.register(
    "selective_copy",
    paper="Mamba: Linear-Time Sequence Modeling with Selective State Spaces (selective copying)",
    arxiv="2312.00752",
    test_kwargs={"vocab_size": 8, "seq_len": 24, "num_tokens": 4, "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "seq_len"},
)
class SelectiveCopy(LengthSplitTask):
    """Selective copying, "Mamba" (arXiv:2312.00752), Section 3.1 / Figure 2.

    Token 0 is noise, token ``V-1`` is the copy marker and data tokens are ``[1, V-1)``. The
    first ``seq_len - num_tokens`` positions hold ``num_tokens`` data tokens at random sorted
    positions among noise; ``num_tokens`` markers follow, and at the ``i``-th marker the target is
    the ``i``-th data token. The spacing is random, so a time-invariant convolution cannot solve it.
    ``test_seq_lens`` longer than ``seq_len`` tests copying across longer noise.
    """

    owner = "selective_copy"

    def __init__(
        self,
        vocab_size: int = 16,
        seq_len: int = 64,
        num_tokens: int = 8,
        test_seq_lens: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 500,
    ) -> None:
        self._check_vocab(vocab_size, minimum=3)
        check_positive_int(self.owner, "num_tokens", num_tokens)
        self._check_sizes(num_train, num_test)
        self.num_tokens = num_tokens
        self._check_lengths(seq_len, test_seq_lens)
        for field_name, L in [("seq_len", self.seq_len)] + [("test_seq_lens", L) for L in self.test_seq_lens]:
            check(
                3 * num_tokens <= L,
                self.owner,
                field_name,
                L,
                f"expected >= 3 * num_tokens = {3 * num_tokens} (room for {num_tokens} data tokens among "
                f"noise plus {num_tokens} markers)",
            )

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
