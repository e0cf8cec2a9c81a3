"""Kimi Delta Attention: the gated delta rule with a per-channel decay (Kimi Linear, arXiv:2510.26692)."""

from mixerlab.ops.kda.chunk import kda_chunk, kda_recurrent
from mixerlab.ops.kda.reference import kda_reference

__all__ = ["kda_chunk", "kda_recurrent", "kda_reference"]
