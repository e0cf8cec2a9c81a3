"""Character-level language modelling (``char_lm``) on text that ships with Python itself.

Shapes: ``inputs, targets: [N, T]``; ``targets`` is ``inputs`` shifted left by one character.

The corpus is the Python Language Reference help text bundled with every CPython installation
as ``pydoc_data.topics`` (about 465k characters of English prose and code for ``help()``), so
it is available offline on a fresh machine. ``corpus="sklearn_descr"`` uses scikit-learn's
bundled dataset descriptions (``sklearn/datasets/descr/*.rst``, about 47k characters) instead.
Characters are ASCII codes ``0..126``; the rare non-ASCII character maps to token 127.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import Task, TaskData, generator

CORPORA = ("pydoc_topics", "sklearn_descr")
VOCAB_SIZE = 128
UNKNOWN = 127


def load_corpus(name: str) -> str:
    """The text of a bundled corpus, joined in a fixed order."""
    if name == "pydoc_topics":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics))
    if name == "sklearn_descr":
        from importlib import resources

        folder = resources.files("sklearn.datasets") / "descr"
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".rst"))
        return "\n\n".join((folder / n).read_text(encoding="utf-8") for n in names)
    raise ValueError(f"unknown corpus {name!r}")


def encode(text: str) -> Tensor:
    codes = torch.tensor(list(text.encode("ascii", errors="replace")), dtype=torch.long)
    # errors="replace" writes "?" for non-ASCII characters; mark them with their own token instead.
    is_ascii = torch.tensor([ord(c) < 128 for c in text], dtype=torch.bool)
    return torch.where(is_ascii & (codes < UNKNOWN), codes, torch.full_like(codes, UNKNOWN))


@TASKS.register(
    "char_lm",
    paper="Character-level language modelling on the Python help text (bits per character)",
    summary="Character-level LM on pydoc_data.topics (bundled with Python); metric: bits per character.",
    test_kwargs={"seq_len": 32, "num_train": 64, "max_test_chars": 2048},
    meta={"metric": "bits_per_char", "slices": "none"},
)
class CharLM(Task):
    """Character-level language model; metric: bits per character on held-out text (lower is better).

    The last ``test_fraction`` of the corpus is held out. Training windows of ``seq_len + 1``
    characters start at offsets drawn from the data seed; the held-out text is cut into
    consecutive windows (at most ``max_test_chars`` characters are scored).
    """

    objective = "bits_per_token"
    higher_is_better = False

    def __init__(
        self,
        seq_len: int = 128,
        num_train: int = 5000,
        test_fraction: float = 0.1,
        max_test_chars: int = 40000,
        corpus: str = "pydoc_topics",
    ) -> None:
        owner = "char_lm"
        check_positive_int(owner, "seq_len", seq_len)
        check_positive_int(owner, "num_train", num_train)
        check_positive_int(owner, "max_test_chars", max_test_chars)
        check(0 < test_fraction < 1, owner, "test_fraction", test_fraction, "expected in (0, 1)")
        check_choice(owner, "corpus", corpus, CORPORA)
        self.seq_len, self.num_train, self.test_fraction = seq_len, num_train, test_fraction
        self.max_test_chars, self.corpus = max_test_chars, corpus
        self.vocab_size = VOCAB_SIZE
        self._codes: Tensor | None = None

    @property
    def train_seq_len(self) -> int:
        return self.seq_len

    def codes(self) -> tuple[Tensor, Tensor]:
        """The encoded corpus split into (train, test) parts."""
        if self._codes is None:
            self._codes = encode(load_corpus(self.corpus))
        split = int(len(self._codes) * (1 - self.test_fraction))
        train, test = self._codes[:split], self._codes[split:]
        check(
            len(train) > self.seq_len + 1 and len(test) > self.seq_len + 1,
            "char_lm",
            "seq_len",
            self.seq_len,
            f"the corpus {self.corpus!r} ({len(self._codes)} characters) is too short for this split",
        )
        return train, test

    def train_data(self, seed: int) -> TaskData:
        train, _ = self.codes()
        g = generator(seed, "char_lm", "train")
        starts = torch.randint(len(train) - self.seq_len - 1, (self.num_train,), generator=g)
        windows = train[starts[:, None] + torch.arange(self.seq_len + 1)]
        return TaskData(windows[:, :-1], windows[:, 1:].clone())

    def eval_data(self, seed: int) -> list[TaskData]:
        _, test = self.codes()
        T = self.seq_len
        count = min((len(test) - 1) // T, max(1, math.ceil(self.max_test_chars / T)))
        inputs = test[: count * T].reshape(count, T)
        targets = test[1 : count * T + 1].reshape(count, T)
        return [TaskData(inputs, targets.clone())]
