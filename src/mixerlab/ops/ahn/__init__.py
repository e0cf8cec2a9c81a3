"""Sliding-window attention plus a recurrent memory of the tokens that left the window, "Artificial
Hippocampus Networks for Efficient Long-Context Modeling" (arXiv:2510.07318).

The memory is a decayed linear (Mamba2-style, scalar gate per head) associative matrix: a token
leaving the window is written as ``M <- a M + k v^T`` with its own gate ``a`` in (0, 1], and a query
reads ``q M``. Output of token ``j`` = softmax attention over positions ``j-W+1 .. j`` + read of the
memory holding positions ``<= j-W``.
"""

from mixerlab.ops.ahn.chunk import ahn_chunk, decayed_memory_chunk
from mixerlab.ops.ahn.recurrent import ahn_recurrent
from mixerlab.ops.ahn.reference import ahn_reference, decayed_memory_reference

__all__ = [
    "ahn_chunk",
    "ahn_recurrent",
    "ahn_reference",
    "decayed_memory_chunk",
    "decayed_memory_reference",
]
