"""PaTH attention: softmax attention with accumulated Householder position transforms (arXiv:2505.16381)."""

from mixerlab.ops.path.chunk import path_chunk
from mixerlab.ops.path.reference import path_reference

__all__ = ["path_chunk", "path_reference"]
