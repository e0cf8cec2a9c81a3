"""The token-mixer contract shared by every sequence-mixing layer.

Shapes: ``x`` is ``[B, T, D]``; heads are ``[B, T, H, K]``.

Every token mixer implements::

    y, state = mixer(x, state=None)      # x, y: [B, T, D]; state: what is carried after the last token
    state0 = mixer.init_state(batch_size)
    n = mixer.state_size(seq_len)        # scalars per sequence held in the state after seq_len tokens

A state is a ``dict[str, Tensor]`` whose tensors all lead with the batch dimension, so that its
size, device and dtype are inspected the same way for every mixer.

Each mixer lists its computation ``modes``: the first is the default fast form, and
``"reference"`` is the plain per-step loop written from the paper's equations, which the test
suite compares every other mode against.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_divisible, check_positive_int

State = dict[str, Tensor]


class TokenMixer(nn.Module):
    """Base class for token mixers (see the module docstring for the contract)."""

    modes: ClassVar[tuple[str, ...]] = ("reference",)
    causal: ClassVar[bool] = True
    # Mixers that honour a padding mask set this; the others reject a mask instead of ignoring it.
    supports_mask: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        if "reference" not in self.modes:
            raise TypeError(f"{type(self).__name__}.modes must include 'reference'")
        self._mode = self.modes[0]

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        check(value in self.modes, type(self).__name__, "mode", value, f"expected one of {list(self.modes)}")
        self._mode = value

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        raise NotImplementedError

    def init_state(
        self, batch_size: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> State:
        raise NotImplementedError

    def state_size(self, seq_len: int) -> int:
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------

    def _factory(self, device: torch.device | str | None, dtype: torch.dtype | None) -> dict:
        """Device and dtype for a new state: the caller's choice, else the parameters'."""
        ref = next(self.parameters(), None)
        return {
            "device": device if device is not None else (ref.device if ref is not None else None),
            "dtype": dtype
            if dtype is not None
            else (ref.dtype if ref is not None else torch.get_default_dtype()),
        }

    def _check_input(self, x: Tensor, mask: Tensor | None) -> None:
        name = type(self).__name__
        if x.dim() != 3:
            raise ConfigError(name, "x.shape", tuple(x.shape), "expected [B, T, D]")
        dim = getattr(self, "dim", None)
        if dim is not None and x.shape[-1] != dim:
            raise ConfigError(name, "x.shape[-1]", x.shape[-1], f"expected dim={dim}")
        if mask is not None and not self.supports_mask:
            raise ConfigError(
                name, "mask", "<tensor>", "this mixer does not support a padding mask; pass None"
            )


def state_numel(state: State | None) -> int:
    """Total number of scalars in a state, over the whole batch."""
    if not state:
        return 0
    return sum(t.numel() for t in _leaves(state))


def _leaves(state: State) -> Iterator[Tensor]:
    for value in state.values():
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, dict):
            yield from _leaves(value)
        else:
            raise TypeError(f"state values must be tensors, got {type(value).__name__}")


def resolve_heads(owner: str, dim: int, num_heads: int, head_dim: int | None) -> int:
    """Validate the head layout and return ``head_dim`` (``dim // num_heads`` unless given)."""
    check_positive_int(owner, "dim", dim)
    check_positive_int(owner, "num_heads", num_heads)
    if head_dim is None:
        check_divisible(owner, "dim", dim, "num_heads", num_heads)
        return dim // num_heads
    check_positive_int(owner, "head_dim", head_dim)
    return head_dim


def set_mode(module: nn.Module, mode: str) -> nn.Module:
    """Set ``mode`` on every token mixer inside ``module`` that offers it; returns ``module``.

    Raises if no token mixer in ``module`` offers ``mode``, so a typo never passes silently.
    """
    found = False
    for sub in module.modules():
        if isinstance(sub, TokenMixer) and mode in sub.modes:
            sub.mode = mode
            found = True
    if not found:
        raise ConfigError(type(module).__name__, "mode", mode, "no token mixer in this module offers it")
    return module
