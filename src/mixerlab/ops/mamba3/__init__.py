"""Mamba-3's SSM (arXiv:2603.15569): exponential-trapezoidal rule, rotary (complex) state."""

from mixerlab.ops.mamba3.chunk import mamba3_chunk
from mixerlab.ops.mamba3.reference import mamba3_reference, rotate

__all__ = ["mamba3_chunk", "mamba3_reference", "rotate"]
