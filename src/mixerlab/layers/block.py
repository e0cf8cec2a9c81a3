"""The residual block: the only place that knows about residuals and norm placement.

Shapes: ``x: [B, T, D]``. Pre-norm residual (arXiv:2002.04745)::

    h = x + mixer(norm1(x))
    y = h + channel_mixer(norm2(h))      # skipped when the channel mixer is ``identity``
"""

from __future__ import annotations

from torch import Tensor, nn

from mixerlab.layers.channel_mixers.mlp import Identity
from mixerlab.layers.token_mixers.base import State, TokenMixer


class Block(nn.Module):
    """Pre-norm residual block; receives its sub-modules already built (composition)."""

    def __init__(
        self, mixer: TokenMixer, channel_mixer: nn.Module, norm1: nn.Module, norm2: nn.Module | None
    ) -> None:
        super().__init__()
        self.norm1, self.mixer = norm1, mixer
        # A mixer-only block has no second sub-layer at all, not a residual around an identity.
        self.has_channel = not isinstance(channel_mixer, Identity)
        self.norm2 = norm2 if self.has_channel else None
        self.channel_mixer = channel_mixer if self.has_channel else None

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        y, state = self.mixer(self.norm1(x), state=state, mask=mask)
        x = x + y
        if self.channel_mixer is not None:
            x = x + self.channel_mixer(self.norm2(x))
        return x, state
