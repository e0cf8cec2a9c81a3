"""Training methods: how a model learns, as hooks the trainer calls at fixed points of a step.

A method is registered in :data:`mixerlab.registry.METHODS` and selected by name in a run config
(``method: {name: dfa, options: {seed: 0}}``). The hooks and the shared helpers are in
:mod:`.base`; each family of methods has its own module, imported here to register it:

- :mod:`.base` -- ``standard`` backpropagation, ``gradient_noise``;
- :mod:`.optimisers` -- ``adamod`` (an optimiser choice made through the hooks);
- :mod:`.feedback_alignment` -- ``dfa`` (direct feedback alignment);
- :mod:`.local` -- block-local learning: ``lls``, ``man``, ``ccl``;
- :mod:`.mixup` -- ``excelformer_mixup`` (ExcelFormer's Hid-Mix and Feat-Mix);
- :mod:`.noprop` -- ``noprop`` (each block denoises a label embedding on its own);
- :mod:`.guidance` -- ``guidance`` (layer-wise CKA to a fixed guide network);
- :mod:`.distill` -- ``distill`` (knowledge distillation from a teacher, logits and features);
- :mod:`.elastic` -- nested networks: ``sortednet``, ``matryoshka``, ``ofa``;
- :mod:`.exits` -- ``early_exit`` and ``loop_depth`` (test-time depth).
"""

from __future__ import annotations

from typing import Any

from mixerlab.registry import METHODS
from mixerlab.train.methods import (  # noqa: F401  (each module registers its methods)
    distill,
    elastic,
    exits,
    feedback_alignment,
    guidance,
    local,
    mixup,
    noprop,
    optimisers,
)
from mixerlab.train.methods.base import GradientNoise, MethodModel, Standard, TrainingMethod, unwrap


def create_method(name: str, options: dict[str, Any] | None = None) -> TrainingMethod:
    return METHODS.create(name, **(options or {}))


__all__ = ["GradientNoise", "MethodModel", "Standard", "TrainingMethod", "create_method", "unwrap"]
