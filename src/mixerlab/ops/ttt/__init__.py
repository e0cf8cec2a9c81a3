"""Test-time training layers (TTT-Linear, TTT-MLP), arXiv:2407.04620: reference loop, dual form."""

from mixerlab.ops.ttt.chunk import ttt_linear_chunk, ttt_mlp_chunk
from mixerlab.ops.ttt.reference import ttt_linear_reference, ttt_mlp_reference

__all__ = ["ttt_linear_chunk", "ttt_linear_reference", "ttt_mlp_chunk", "ttt_mlp_reference"]
