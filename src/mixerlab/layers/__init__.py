"""Layers: token mixers, channel mixers, norms and the residual block. Importing registers them."""

from mixerlab.layers import channel_mixers, norms, token_mixers  # noqa: F401
