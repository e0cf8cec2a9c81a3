"""Lizard attention (arXiv:2507.09025): gated linear attention plus sliding-window softmax
attention with a meta memory, one layer.

``lizard_reference`` is the per-step loop, ``lizard_chunk`` the training form (the GLA chunk op
plus blocked window attention), ``lizard_recurrent`` one decoding step.
"""

from mixerlab.ops.lizard.chunk import lizard_chunk, meta_window_attention_chunk
from mixerlab.ops.lizard.recurrent import lizard_recurrent
from mixerlab.ops.lizard.reference import lizard_reference, meta_window_attention_reference

__all__ = [
    "lizard_chunk",
    "lizard_recurrent",
    "lizard_reference",
    "meta_window_attention_chunk",
    "meta_window_attention_reference",
]
