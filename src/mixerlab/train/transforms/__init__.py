"""Transforms: ``model -> model`` changes applied by config before or after training.

A transform is registered in :data:`mixerlab.registry.TRANSFORMS` and listed in a run config::

    transforms: [{name: prune_magnitude, options: {amount: 0.5}, when: after}]

The contract (``Transform.apply(model, context) -> (model, facts)``, ``finalize``, ``when``) is in
:mod:`.base`. One module per family, each registering its transforms on import:

- :mod:`.prune`: unstructured magnitude, N:M (2:4), attention heads, channels, gradual (cubic);
- :mod:`.quantize`: int8/int4 fake quantisation (PTQ with calibration, QAT with a straight-through
  estimator), FP8 (e4m3, e5m2), BitNet b1.58 ternary weights, BiPer binary weights;
- :mod:`.lowrank`: SVD truncation by an energy threshold, Maestro's ordered low-rank factors;
- :mod:`.linearize`: softmax attention -> linear attention + sliding window (LoLCATs, Lizard);
- :mod:`.storage`: the packed low-bit file (``save_compressed`` / ``load_compressed``) whose size
  every transform reports as ``bytes``.
"""

from mixerlab.train.transforms import linearize, lowrank, prune, quantize  # noqa: F401  (registers)
from mixerlab.train.transforms.base import (
    WHEN,
    Transform,
    TransformContext,
    create_transform,
    prunable_weights,
    sparsity,
)
from mixerlab.train.transforms.storage import compressed_bytes, load_compressed, save_compressed

__all__ = [
    "WHEN",
    "Transform",
    "TransformContext",
    "compressed_bytes",
    "create_transform",
    "load_compressed",
    "prunable_weights",
    "save_compressed",
    "sparsity",
]
