"""State tracking: ``parity`` and ``modular_arithmetic``, trained short and tested longer.

Shapes: ``inputs, targets: [N, T]``. Each evaluation length is its own slice (``seq_len``), so
length generalisation is read per length bucket.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.errors import check, check_choice
from mixerlab.registry import TASKS
from mixerlab.tasks.base import IGNORE, TaskData
from mixerlab.tasks.synthetic import LengthSplitTask

LABELS = ("all", "last")


class _LengthGeneralisation(LengthSplitTask):
    """Shared options: ``labels``, and evaluation by default at 1, 2 and 4 times ``seq_len``."""

    owner = "state_tracking"

    def _lengths(self, seq_len, test_seq_lens, num_train, num_test, labels, minimum: int = 1) -> None:
        self._check_sizes(num_train, num_test)
        check_choice(self.owner, "labels", labels, LABELS)
        self.labels = labels
        self._check_lengths(seq_len, test_seq_lens, test_multiples=(1, 2, 4), minimum=minimum)

    def _finish(self, inputs: Tensor, targets: Tensor, seq_len: int) -> TaskData:
        if self.labels == "last":
            # Keep only the last scored position of each sequence.
            scored = (targets != IGNORE).long()
            last = (scored * torch.arange(seq_len)).argmax(dim=1, keepdim=True)
            kept = torch.full_like(targets, IGNORE)
            targets = kept.scatter_(1, last, targets.gather(1, last))
        slices = {"seq_len": torch.full((inputs.shape[0],), seq_len, dtype=torch.long)}
        return TaskData(inputs, targets, slices)


@TASKS.register(
    "parity",
    paper="Neural Networks and the Chomsky Hierarchy (parity check)",
    arxiv="2207.02098",
    test_kwargs={"seq_len": 8, "test_seq_lens": [8, 16], "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "seq_len"},
)
class Parity(_LengthGeneralisation):
    """Parity of a bit string, "Neural Networks and the Chomsky Hierarchy" (arXiv:2207.02098).

    Inputs are bits ``x_t in {0, 1}``; the target at position ``t`` is ``x_1 xor ... xor x_t``
    (``labels="all"``), or only at the last position (``labels="last"``, the paper's setting).
    """

    owner = "parity"

    def __init__(
        self,
        seq_len: int = 32,
        test_seq_lens: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 500,
        labels: str = "all",
    ) -> None:
        self.vocab_size = 2
        self._lengths(seq_len, test_seq_lens, num_train, num_test, labels)

    def _examples(self, num: int, seq_len: int, g: torch.Generator) -> TaskData:
        bits = torch.randint(2, (num, seq_len), generator=g)
        return self._finish(bits, bits.cumsum(dim=1) % 2, seq_len)


OPS = ("+", "-", "*")


@TASKS.register(
    "modular_arithmetic",
    paper="Neural Networks and the Chomsky Hierarchy (modular arithmetic)",
    arxiv="2207.02098",
    test_kwargs={"seq_len": 9, "test_seq_lens": [9, 17], "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "seq_len"},
)
class ModularArithmetic(_LengthGeneralisation):
    """Running modular arithmetic, after "Neural Networks and the Chomsky Hierarchy" (arXiv:2207.02098).

    Inputs alternate numbers and operators, ``n_0 o_1 n_1 o_2 n_2 ...`` with ``n_i in [0, p)``
    (tokens ``0..p-1``) and ``o_i`` from ``ops`` (tokens ``p, p+1, ...``). The target at each
    number position is the value of the expression so far, evaluated left to right modulo
    ``p``: a finite-state (group / monoid) word problem with ``p`` states.
    """

    owner = "modular_arithmetic"

    def __init__(
        self,
        modulus: int = 5,
        ops: list[str] = ("+", "-"),
        seq_len: int = 31,
        test_seq_lens: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 500,
        labels: str = "all",
    ) -> None:
        check(
            isinstance(modulus, int) and modulus >= 2, self.owner, "modulus", modulus, "expected an int >= 2"
        )
        ops = list(ops)
        check(
            len(ops) > 0 and len(set(ops)) == len(ops) and all(o in OPS for o in ops),
            self.owner,
            "ops",
            ops,
            f"expected a non-empty list of distinct operators from {list(OPS)}",
        )
        self.modulus, self.ops = modulus, ops
        self.vocab_size = modulus + len(ops)
        self._lengths(seq_len, test_seq_lens, num_train, num_test, labels)

    def _examples(self, num: int, seq_len: int, g: torch.Generator) -> TaskData:
        p = self.modulus
        numbers = torch.randint(p, (num, (seq_len + 1) // 2), generator=g)
        ops = torch.randint(len(self.ops), (num, seq_len // 2), generator=g)
        values = torch.empty_like(numbers)
        acc = numbers[:, 0]
        values[:, 0] = acc
        for i in range(1, numbers.shape[1]):
            op, n = ops[:, i - 1], numbers[:, i]
            table = {"+": (acc + n) % p, "-": (acc - n) % p, "*": (acc * n) % p}
            acc = torch.stack([table[o] for o in self.ops], dim=1).gather(1, op[:, None]).squeeze(1)
            values[:, i] = acc
        inputs = torch.empty(num, seq_len, dtype=torch.long)
        inputs[:, 0::2] = numbers
        inputs[:, 1::2] = p + ops
        targets = torch.full_like(inputs, IGNORE)
        targets[:, 0::2] = values
        return self._finish(inputs, targets, seq_len)
