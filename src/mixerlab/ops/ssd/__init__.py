"""Mamba-2's state space duality (SSD), arXiv:2405.21060."""

from mixerlab.ops.ssd.chunk import ssd_chunk
from mixerlab.ops.ssd.recurrent import ssd_recurrent
from mixerlab.ops.ssd.reference import ssd_reference

__all__ = ["ssd_chunk", "ssd_recurrent", "ssd_reference"]
