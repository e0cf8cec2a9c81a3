"""The residual block: the only place that knows about residuals and norm placement.

Shapes: ``x: [B, T, D]``. Pre-norm residual (arXiv:2002.04745)::

    h = x + mixer(norm1(x))
    y = h + channel_mixer(norm2(h))      # skipped when the channel mixer is ``identity``

Packed documents: with ``cu_seqlens: [N+1]`` the input is ``x: [1, T_total, D]`` (documents
back to back) and the mixer runs through ``forward_packed``; the state is then a list of ``N``
per-document states (batch size 1 each). Norms and channel mixers act per token (an MoE with a
capacity shares it across the row, as it does across a batch), so no state crosses a boundary.
"""

from __future__ import annotations

from torch import Tensor, nn

from mixerlab.errors import ConfigError
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
        self,
        x: Tensor,
        *,
        state: State | list[State] | None = None,
        mask: Tensor | None = None,
        cu_seqlens: Tensor | None = None,
    ) -> tuple[Tensor, State | list[State]]:
        if cu_seqlens is None:
            y, state = self.mixer(self.norm1(x), state=state, mask=mask)
        elif mask is not None:
            raise ConfigError(
                "block", "mask", "<tensor>", "packed documents (cu_seqlens) have no padding; pass mask=None"
            )
        else:
            y, state = self.mixer.forward_packed(self.norm1(x), cu_seqlens, states=state)
        x = x + y
        if self.channel_mixer is not None:
            x = x + self.channel_mixer(self.norm2(x))
        return x, state
