"""Gated slot attention: a bounded memory of ``m`` key and value slots written through a shared
forget gate and read with a softmax over slots (arXiv:2409.07146)."""

from mixerlab.ops.gsa.chunk import gsa_chunk, value_decay_chunk
from mixerlab.ops.gsa.reference import gsa_recurrent, gsa_reference

__all__ = ["gsa_chunk", "gsa_recurrent", "gsa_reference", "value_decay_chunk"]
