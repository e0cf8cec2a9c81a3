"""Named models, one per modality: argument dicts for :func:`~mixerlab.models.model.compose`.

Each entry names a stem, a head and a mixing; everything else (``dim``, ``depth``, ``mixer``,
``channel_mixer``, ``norm``) and the task's sizes are keyword arguments of ``create_model``. A
key given to ``create_model`` replaces the entry's, e.g. ``stem={"name": "patch", "patch_size": 4}``.
"""

from __future__ import annotations

import functools
from typing import Any

from mixerlab.models.model import compose
from mixerlab.registry import MODELS

BUILDERS: dict[str, dict[str, Any]] = {
    "lm": {"stem": "token", "head": "lm", "mixing": "causal", "tie_embeddings": True},
    "image_classifier": {
        "stem": {"name": "patch", "patch_size": 2},
        "head": {"name": "classify", "pool": "cls"},
        "mixing": "noncausal",
    },
    "tabular": {"stem": "features", "head": {"name": "classify", "pool": "cls"}, "mixing": "noncausal"},
    "forecaster": {"stem": {"name": "series", "patch_len": 8}, "head": "forecast", "mixing": "noncausal"},
}

# What each model is for (the task kinds it serves), a summary, and tiny sizes for the tests.
_ABOUT = {
    "lm": (
        ("next_token",),
        "Causal language model: token embedding, a (hybrid) stack of blocks, tied output head.",
        {"vocab_size": 11, "dim": 16, "depth": 2},
    ),
    "image_classifier": (
        ("classify",),
        "Image classifier: ViT patches with 2-D positions, non-causal blocks, class-token head.",
        {"image_size": 8, "in_chans": 1, "num_classes": 3, "dim": 16, "depth": 2},
    ),
    "tabular": (
        ("classify", "regress"),
        "Table model: FT-Transformer feature tokens, non-causal blocks, class-token head.",
        {"num_features": 3, "cardinalities": [4], "num_classes": 2, "dim": 16, "depth": 2},
    ),
    "forecaster": (
        ("forecast",),
        "Forecaster: RevIN-normalised series patches, non-causal blocks, flatten head (RevIN inverse).",
        {"context": 16, "horizon": 4, "num_channels": 1, "dim": 16, "depth": 2},
    ),
}

for _name, _arguments in BUILDERS.items():
    _kinds, _summary, _test_kwargs = _ABOUT[_name]
    MODELS.register(_name, summary=_summary, test_kwargs=_test_kwargs, meta={"kinds": _kinds})(
        functools.partial(compose, **_arguments)
    )
