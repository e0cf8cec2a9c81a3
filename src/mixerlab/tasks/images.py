"""Small real images: scikit-learn's bundled 8x8 digits as ``[N, 1, 8, 8]`` images (``digits``).

Shapes: ``inputs: [N, C, H, W]`` float32 in ``[0, 1]``; ``targets: [N]`` int64; slices
``{"label": [N]}``. The images are split into train / validation / test by one permutation drawn
from the data seed (70 / 15 / 15 by default); no image is in two splits. They ship inside
scikit-learn, so this runs offline; scikit-learn is imported only when data is made.
"""

from __future__ import annotations

from typing import Any

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
