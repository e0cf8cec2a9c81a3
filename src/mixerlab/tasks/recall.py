"""Associative recall: multi-query (``mqar``) and single-query induction (``induction``).

Shapes: ``inputs, targets: [N, T]`` int64; keys, values ``[N, P]`` for ``P`` key-value pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import IGNORE, TaskData, check_int_list, generator
from mixerlab.tasks.synthetic import LengthSplitTask, sample_without_replacement


def power_law_gaps(num: int, space: int, k: int, power_a: float, g: torch.Generator) -> Tensor:
    """``[num, k]`` distinct gaps in ``[0, space)`` drawn without replacement with ``p(g) ∝ (g+1)^(a-1)``.

    Adding Gumbel noise to log-probabilities and keeping the top ``k`` samples without
    replacement from exactly that distribution (the Gumbel-top-k trick), vectorised over rows.
    """
    logp = (power_a - 1.0) * torch.log(torch.arange(1, space + 1, dtype=torch.float64))
    u = torch.rand(num, space, generator=g, dtype=torch.float64).clamp_min(1e-300)
    return (logp - torch.log(-torch.log(u))).topk(k, dim=1).indices


def mqar_examples(
    num: int,
    seq_len: int,
    num_kv_pairs: int,
    vocab_size: int,
    power_a: float,
    random_non_queries: bool,
    g: torch.Generator,
) -> TaskData:
    """MQAR examples as in Zoology (arXiv:2312.04927, ``multiquery_ar``).

    Keys come from ``[1, V/2)`` and values from ``[V/2, V)``. The ``P`` pairs come first as
    ``k1 v1 k2 v2 ...``; each key is then queried once, at an even offset ``2 g`` of the query
    region with the gap ``g`` drawn from a power law (short gaps are likelier), and the target at
    the query position is the value bound to that key. Other positions of the query region hold
    random tokens when ``random_non_queries`` is set, else token 0.
    """
    half = vocab_size // 2
    keys = 1 + sample_without_replacement(num, half - 1, num_kv_pairs, g)
    values = half + sample_without_replacement(num, vocab_size - half, num_kv_pairs, g)
    context = torch.stack([keys, values], dim=-1).reshape(num, 2 * num_kv_pairs)  # [N, 2P]
    space = (seq_len - 2 * num_kv_pairs) // 2
    gaps = power_law_gaps(num, space, num_kv_pairs, power_a, g)
    positions = 2 * num_kv_pairs + 2 * gaps  # [N, P]
    inputs = torch.zeros(num, seq_len, dtype=torch.long)
    inputs[:, : 2 * num_kv_pairs] = context
    inputs.scatter_(1, positions, keys)
    targets = torch.full((num, seq_len), IGNORE, dtype=torch.long)
    targets.scatter_(1, positions, values)
    if random_non_queries:
        filler = torch.randint(vocab_size, (num, seq_len), generator=g)
        inputs = torch.where(inputs == 0, filler, inputs)
    slices = {
        "num_kv_pairs": torch.full((num,), num_kv_pairs, dtype=torch.long),
        "seq_len": torch.full((num,), seq_len, dtype=torch.long),
    }
    return TaskData(inputs, targets, slices)


@TASKS.register(
    "mqar",
    paper="Zoology: Measuring and Improving Recall in Efficient Language Models",
    arxiv="2312.04927",
    test_kwargs={"vocab_size": 32, "seq_len": 32, "num_kv_pairs": [2, 4], "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "num_kv_pairs, seq_len"},
)
class MQAR(LengthSplitTask):
    """Multi-query associative recall, "Zoology" (arXiv:2312.04927).

    Training examples have length ``seq_len`` and are split evenly over ``num_kv_pairs``; every
    combination of ``test_seq_lens`` x ``test_num_kv_pairs`` is an evaluation set of ``num_test``
    examples. Setting ``test_seq_lens`` longer than ``seq_len`` trains short and tests long.
    ``power_a=0.01`` is Zoology's default.
    """

    owner = "mqar"

    def __init__(
        self,
        vocab_size: int = 64,
        seq_len: int = 64,
        num_kv_pairs: int | list[int] = (4, 8),
        test_seq_lens: int | list[int] | None = None,
        test_num_kv_pairs: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 500,
        power_a: float = 0.01,
        random_non_queries: bool = True,
    ) -> None:
        owner = self.owner
        check_positive_int(owner, "vocab_size", vocab_size)
        self._check_sizes(num_train, num_test)
        check(0 < power_a < 1, owner, "power_a", power_a, "expected 0 < power_a < 1")
        self.vocab_size = vocab_size
        self.power_a, self.random_non_queries = power_a, random_non_queries
        self.seq_len = check_int_list(owner, "seq_len", seq_len)[0]
        self.num_kv_pairs = check_int_list(owner, "num_kv_pairs", num_kv_pairs)
        self.test_seq_lens = check_int_list(owner, "test_seq_lens", test_seq_lens or [self.seq_len])
        self.test_num_kv_pairs = check_int_list(
            owner, "test_num_kv_pairs", test_num_kv_pairs or self.num_kv_pairs
        )
        half = vocab_size // 2
        for L, field_name in [(self.seq_len, "seq_len")] + [(L, "test_seq_lens") for L in self.test_seq_lens]:
            check(L % 2 == 0, owner, field_name, L, "sequence lengths must be even (key-value pairs)")
        for kv_field, kvs, lens in [
            ("num_kv_pairs", self.num_kv_pairs, [self.seq_len]),
            ("test_num_kv_pairs", self.test_num_kv_pairs, self.test_seq_lens),
        ]:
            for kv in kvs:
                check(
                    kv <= half - 1,
                    owner,
                    kv_field,
                    kv,
                    f"vocab_size={vocab_size} has only {half - 1} keys (tokens 1..{half - 1}); "
                    "use at most that many pairs or a larger vocab_size",
                )
                for L in lens:
                    check(
                        4 * kv <= L,
                        owner,
                        kv_field,
                        kv,
                        f"a sequence of length {L} holds at most {L // 4} key-value pairs "
                        "(pairs take 2P tokens and the P queries need 2P more)",
                    )

    def train_data(self, seed: int) -> TaskData:
        g = generator(seed, self.owner, "train")
        n = len(self.num_kv_pairs)
        counts = [self.num_train // n + (i < self.num_train % n) for i in range(n)]
        return TaskData.concat(
            [self._kv_examples(c, self.seq_len, kv, g) for c, kv in zip(counts, self.num_kv_pairs) if c > 0]
        )

    def eval_data(self, seed: int) -> list[TaskData]:
        parts = []
        for L in self.test_seq_lens:
            group = [
                self._kv_examples(self.num_test, L, kv, generator(seed, self.owner, "test", L, kv))
                for kv in self.test_num_kv_pairs
            ]
            parts.append(TaskData.concat(group))
        return parts

    def _kv_examples(self, num: int, seq_len: int, kv: int, g: torch.Generator) -> TaskData:
        return mqar_examples(num, seq_len, kv, self.vocab_size, self.power_a, self.random_non_queries, g)


@TASKS.register(
    "induction",
    paper="In-context Learning and Induction Heads (single-query associative recall)",
    arxiv="2209.11895",
    test_kwargs={"vocab_size": 16, "seq_len": 24, "num_train": 64, "num_test": 16},
    meta={"metric": "accuracy", "slices": "seq_len"},
)
class Induction(LengthSplitTask):
    """Induction heads / single-query associative recall (arXiv:2209.11895, H3 arXiv:2212.14052).

    A sequence of random tokens from ``[0, V-1)`` contains the trigger token ``V-1`` once,
    followed by a random token ``x``; the last input token is the trigger again, and the one
    target (at the last position) is ``x``: the model must find the earlier trigger and copy what
    followed it.
    """

    owner = "induction"

    def __init__(
        self,
        vocab_size: int = 32,
        seq_len: int = 64,
        test_seq_lens: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 500,
    ) -> None:
        self._check_vocab(vocab_size, minimum=3)
        self._check_sizes(num_train, num_test)
        self._check_lengths(seq_len, test_seq_lens, minimum=3)

    def _examples(self, num: int, seq_len: int, g: torch.Generator) -> TaskData:
        trigger = self.vocab_size - 1
        inputs = torch.randint(trigger, (num, seq_len), generator=g)
        # The trigger goes anywhere that leaves room for its follower before the final trigger.
        where = torch.randint(seq_len - 2, (num, 1), generator=g)
        inputs.scatter_(1, where, trigger)
        answer = inputs.gather(1, where + 1)
        inputs[:, -1] = trigger
        targets = torch.full_like(inputs, IGNORE)
        targets[:, -1:] = answer
        return TaskData(inputs, targets, {"seq_len": torch.full((num,), seq_len, dtype=torch.long)})
