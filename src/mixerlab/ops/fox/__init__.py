"""Forgetting attention: softmax attention with a data-dependent decay bias (the Forgetting
Transformer, arXiv:2503.02130)."""

from mixerlab.ops.fox.parallel import fox_parallel
from mixerlab.ops.fox.reference import fox_reference

__all__ = ["fox_parallel", "fox_reference"]
