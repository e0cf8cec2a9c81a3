"""What every non-causal token mixer shares: no state, and an optional padding mask.

A non-causal mixer (a native form built with ``causal=False``, or a wrapper of
:mod:`mixerlab.layers.wrappers`) reads the whole sequence at once, so it cannot continue a
sequence from a state and decoding is meaningless: the state is empty (``init_state`` and
``forward`` return ``{}``, ``state_size`` is 0), and passing any other state is an error (passing
``{}`` back is accepted, so ``state=mixer.init_state(B)`` equals ``state=None`` as for every mixer).

A padding mask is ``[B, T]`` bool, True for a real token; padded positions never change the
outputs at real positions (outputs at padded positions have no meaning).

Shapes: ``x: [B, T, D]``, ``mask: [B, T]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mixerlab.errors import ConfigError


def reject_state(owner: str, state: Any) -> None:
    """A non-causal mixer carries no state; passing one (other than the empty ``{}``) is an error."""
    if state is not None and (not isinstance(state, (dict, list)) or any(state)):
        raise ConfigError(
            owner,
            "state",
            "<state>",
            "a non-causal mixer reads the whole sequence at once and carries no state (no decoding); "
            "pass state=None, or use the causal form to continue a sequence",
        )


def check_padding_mask(owner: str, mask: Tensor | None, x: Tensor) -> None:
    """``mask`` must be ``None`` or a bool ``[B, T]`` tensor matching ``x: [B, T, D]``."""
    if mask is None:
        return
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2]):
        raise ConfigError(
            owner,
            "mask",
            f"<{mask.dtype} tensor of shape {tuple(mask.shape)}>",
            f"expected a bool tensor of shape [B, T] = {tuple(x.shape[:2])}, True for real tokens",
        )
