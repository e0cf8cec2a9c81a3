"""Layers: token mixers, channel mixers, norms, the residual block and the non-causal / 2-D
wrappers. Importing registers them."""

from mixerlab.layers import channel_mixers, norms, token_mixers  # noqa: F401
from mixerlab.layers.block import Block
from mixerlab.layers.wrappers import Bidirectional, CrossScan2D

__all__ = ["Bidirectional", "Block", "CrossScan2D"]
