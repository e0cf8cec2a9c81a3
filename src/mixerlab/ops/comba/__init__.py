"""Comba: a bilinear RNN with a scalar-plus-low-rank transition and output correction (arXiv:2506.02475)."""

from mixerlab.ops.comba.chunk import comba_chunk, comba_recurrent
from mixerlab.ops.comba.reference import comba_reference

__all__ = ["comba_chunk", "comba_recurrent", "comba_reference"]
