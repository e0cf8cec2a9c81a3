"""Image tasks: scikit-learn's bundled 8x8 digits as ``[N, 1, 8, 8]`` images (``digits``), and a
generated long-range 2-D task, ``pathfinder`` (are the two dots connected?).

Shapes: ``inputs: [N, C, H, W]`` float32 in ``[0, 1]``; ``targets: [N]`` int64; slices
``{"label": [N]}``. The images are split into train / validation / test by one permutation drawn
from the data seed (70 / 15 / 15 by default); no image is in two splits. They ship inside
scikit-learn, so this runs offline; scikit-learn is imported only when data is made.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import Task, TaskData
from mixerlab.tasks.digits import NUM_CLASSES, NUM_LEVELS, load_digits_tensors
from mixerlab.tasks.tables import TEST_FRACTION, VAL_FRACTION, check_fractions, shuffled_split

IMAGE_SIZE = 8


@TASKS.register(
    "digits",
    paper="Optical Recognition of Handwritten Digits, Alpaydin & Kaynak 1998 (UCI), via scikit-learn",
    test_kwargs={},
    meta={"metric": "accuracy", "slices": "label", "rows": 1797},
)
class Digits(Task):
    """Optical Recognition of Handwritten Digits, Alpaydin & Kaynak 1998 (UCI): 8x8 images, 10 classes.

    ``inputs: [N, 1, 8, 8]`` pixel intensities ``0..16`` divided by 16; ``targets: [N]`` the digit.
    """

    kind = "classify"
    objective = "cross_entropy"

    def __init__(self, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION) -> None:
        check_fractions("digits", val_fraction, test_fraction)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.image_size, self.in_chans, self.num_classes = IMAGE_SIZE, 1, NUM_CLASSES

    def model_io(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "in_chans": self.in_chans, "num_classes": self.num_classes}

    @property
    def train_seq_len(self) -> int:
        # Pixels; a patch stem of patch size p sees (H // p) * (W // p) tokens of them.
        return self.image_size * self.image_size

    def _split(self, seed: int, split: str) -> TaskData:
        pixels, labels = load_digits_tensors()  # [1797, 64] int64 in 0..16, [1797]
        idx = shuffled_split(len(labels), seed, "digits", self.val_fraction, self.test_fraction)[split]
        # [n, 64] -> [n, 1, 8, 8], row-major as scikit-learn stores the image.
        images = pixels[idx].float().div(NUM_LEVELS - 1).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
        return TaskData(images, labels[idx], {"label": labels[idx]})

    def train_data(self, seed: int) -> TaskData:
        return self._split(seed, "train")

    def val_data(self, seed: int) -> TaskData:
        return self._split(seed, "val")

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._split(seed, "test")]


# Path pixels and dot pixels: two intensities, so a model can tell an end from a path.
PATH_LEVEL, DOT_LEVEL = 0.5, 1.0
_STEPS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def _snake(rng: random.Random, size: int, length: int, taken: set) -> list[tuple[int, int]] | None:
    """A 4-connected random walk of ``length`` cells that avoids ``taken`` and their neighbours
    (so that two snakes never touch); None when it gets stuck."""

    def free(cell: tuple[int, int], own: set) -> bool:
        y, x = cell
        if not (0 <= y < size and 0 <= x < size) or cell in own:
            return False
        return all((y + dy, x + dx) not in taken for dy, dx in ((0, 0), *_STEPS))

    start = (rng.randrange(size), rng.randrange(size))
    if not free(start, set()):
        return None
    path, heading = [start], rng.randrange(4)
    for _ in range(length - 1):
        # Mostly straight on (a curvy, not a tangled, path); never touching its own earlier cells.
        options = [heading] * 3 + [(heading + 1) % 4, (heading + 3) % 4]
        rng.shuffle(options)
        for h in options:
            cell = (path[-1][0] + _STEPS[h][0], path[-1][1] + _STEPS[h][1])
            others = set(path[:-1])
            if free(cell, set(path)) and all((cell[0] + dy, cell[1] + dx) not in others for dy, dx in _STEPS):
                path.append(cell)
                heading = h
                break
        else:
            return None
    return path


def pathfinder_image(rng: random.Random, size: int, connected: bool, distractors: int) -> torch.Tensor:
    """One ``[1, size, size]`` image: two dots, joined by one path when ``connected``, else each at
    the end of its own path; plus ``distractors`` paths without dots. Paths never touch."""
    length = max(4, (3 * size) // 2)  # long paths: the dots end up far apart as images grow
    while True:
        taken: set = set()
        snakes = []
        # The same number of path cells either way (one path of L or two of L/2, then the
        # distractors of L/2), so counting ink does not tell the classes apart.
        lengths = ([length] if connected else [length // 2] * 2) + [length // 2] * distractors
        for n in lengths:
            snake = _snake(rng, size, n, taken)
            if snake is None:
                break
            snakes.append(snake)
            taken.update(snake)
        else:
            image = torch.zeros(1, size, size)
            for snake in snakes:
                for y, x in snake:
                    image[0, y, x] = PATH_LEVEL
            dots = [snakes[0][0], snakes[0][-1]] if connected else [snakes[0][-1], snakes[1][-1]]
            for y, x in dots:
                image[0, y, x] = DOT_LEVEL
            return image


@TASKS.register(
    "pathfinder",
    paper="Learning long-range spatial dependencies with horizontal gated recurrent units (Pathfinder)",
    arxiv="1805.08315",
    test_kwargs={"image_size": 8, "num_train": 64, "num_eval": 32},
    meta={"metric": "accuracy", "slices": "label"},
)
class Pathfinder(Task):
    """Pathfinder-like images, after Linsley et al. (arXiv:1805.08315): are the two dots connected?

    Each ``image_size x image_size`` image holds two dots (intensity 1) and paths (0.5) that never
    touch: in a positive image one path of ``L = 1.5 x image_size`` cells joins the dots, in a
    negative image each dot ends its own path of ``L / 2`` (the same ink); ``distractors`` more
    paths of ``L / 2`` carry no dot. The answer needs a path followed over ``L`` cells, so
    difficulty grows with the image size. Classes are balanced; every image is drawn from the
    seed and the split.
    ``inputs: [N, 1, S, S]`` float32, ``targets: [N]`` (1: connected).
    """

    kind = "classify"
    objective = "cross_entropy"

    def __init__(
        self, image_size: int = 16, distractors: int = 1, num_train: int = 2000, num_eval: int = 500
    ) -> None:
        for name, value in (("image_size", image_size), ("num_train", num_train), ("num_eval", num_eval)):
            check_positive_int("pathfinder", name, value)
        check(image_size >= 6, "pathfinder", "image_size", image_size, "expected >= 6 (room for two paths)")
        check(
            isinstance(distractors, int) and 0 <= distractors <= image_size // 4,
            "pathfinder",
            "distractors",
            distractors,
            f"expected an integer in [0, {image_size // 4}] (image_size // 4 fit without touching)",
        )
        self.image_size, self.distractors = image_size, distractors
        self.num_train, self.num_eval = num_train, num_eval
        self.in_chans, self.num_classes = 1, 2

    def model_io(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "in_chans": self.in_chans, "num_classes": self.num_classes}

    @property
    def train_seq_len(self) -> int:
        return self.image_size * self.image_size

    def _make(self, seed: int, split: str, n: int) -> TaskData:
        # A string seed is hashed deterministically (not Python's salted hash()).
        rng = random.Random(f"pathfinder/{seed}/{split}/{self.image_size}/{self.distractors}")
        labels = torch.tensor([i % 2 for i in range(n)])
        images = torch.stack(
            [pathfinder_image(rng, self.image_size, bool(c), self.distractors) for c in labels.tolist()]
        )
        return TaskData(images, labels, {"label": labels})

    def train_data(self, seed: int) -> TaskData:
        return self._make(seed, "train", self.num_train)

    def val_data(self, seed: int) -> TaskData:
        return self._make(seed, "val", self.num_eval)

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._make(seed, "test", self.num_eval)]
