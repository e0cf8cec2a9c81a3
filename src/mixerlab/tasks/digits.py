"""Sequential digits (``sequential_digits``): scikit-learn's bundled 8x8 digits read pixel by pixel.

Shapes: ``inputs, targets: [N, 64]``; pixel intensities ``0..16`` are the tokens and the class
``0..9`` is the one target, at the last position. The images ship inside scikit-learn, so this
runs offline; scikit-learn is imported only when the data is made.
"""

from __future__ import annotations

import functools

import torch

from mixerlab.errors import check
from mixerlab.registry import TASKS
from mixerlab.tasks.base import IGNORE, Task, TaskData, generator

NUM_PIXELS, NUM_LEVELS, NUM_CLASSES = 64, 17, 10


@functools.lru_cache(maxsize=1)
def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """``images: [1797, 64]`` int64 in ``0..16`` and ``labels: [1797]`` from ``sklearn.datasets``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("sequential_digits needs scikit-learn: pip install 'mixerlab[bench]'") from err
    digits = load_digits()
    images = torch.as_tensor(digits.data, dtype=torch.long)
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    return images, labels


@TASKS.register(
    "sequential_digits",
    paper="Sequential MNIST, on scikit-learn's 8x8 digits (UCI optical digits)",
    arxiv="1504.00941",
    test_kwargs={"test_fraction": 0.2},
    meta={"metric": "accuracy", "slices": "label"},
)
class SequentialDigits(Task):
    """Pixel-by-pixel digit classification, the sequential-MNIST probe of arXiv:1504.00941.

    The 1797 images are split into train and test by a permutation drawn from the data seed
    (``test_fraction`` of them held out). Slices are per class label.
    """

    def __init__(self, test_fraction: float = 0.2) -> None:
        check(
            0 < test_fraction < 1, "sequential_digits", "test_fraction", test_fraction, "expected in (0, 1)"
        )
        self.test_fraction = test_fraction
        # The class ids 0..9 are read from the same output layer as the pixel levels.
        self.vocab_size = NUM_LEVELS

    @property
    def train_seq_len(self) -> int:
        return NUM_PIXELS

    def _split(self, seed: int, train: bool) -> TaskData:
        images, labels = load_digits_tensors()
        order = torch.randperm(len(labels), generator=generator(seed, "sequential_digits", "split"))
        num_test = round(self.test_fraction * len(labels))
        idx = order[num_test:] if train else order[:num_test]
        inputs, label = images[idx], labels[idx]
        targets = torch.full_like(inputs, IGNORE)
        targets[:, -1] = label
        return TaskData(inputs, targets, {"label": label})

    def train_data(self, seed: int) -> TaskData:
        return self._split(seed, train=True)

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._split(seed, train=False)]
