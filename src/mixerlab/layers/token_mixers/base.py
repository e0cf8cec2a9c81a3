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

Each mixer also declares ``noncausal``, how it mixes when every position may see every other
(images, tables, encoders; built by :func:`mixerlab.layers.mixing.make_mixer`):

- ``"native"``: the paper defines a non-causal form; the constructor takes ``causal: bool = True``
  and ``causal=False`` computes it (e.g. attention without its mask);
- ``"bidirectional"`` (the default): the generic wrapper
  :class:`~mixerlab.layers.wrappers.Bidirectional` runs one instance forward and one over the
  reversed sequence and combines them;
- ``"none"``: neither makes sense; the mixer's docstring says why, and asking for it is an error.

Documents of different lengths packed into one row (no padding) go through
``y, states = mixer.forward_packed(x, cu_seqlens)`` with ``x: [1, T_total, D]`` and offsets
``cu_seqlens: [N+1]``; ``states`` holds one state per document and nothing crosses a document
boundary. ``packed`` declares how: ``"native"`` (inside the fast path), ``"split"`` (the default:
each document alone) or ``"none"`` (``packed_reason`` says why; an error).
"""

from __future__ import annotations

import itertools
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
    # How this mixer mixes non-causally: "native", "bidirectional" or "none" (module docstring).
    noncausal: ClassVar[str] = "bidirectional"
    # Mixers that honour a padding mask set this; the others reject a mask instead of ignoring it.
    supports_mask: ClassVar[bool] = False
    # How ``forward_packed`` runs documents packed into one row: "native" (document offsets are
    # handled inside the mixer's fast path), "split" (the generic path: each document alone, which
    # is the definition) or "none" (``packed_reason`` says why; ``forward_packed`` raises).
    packed: ClassVar[str] = "split"
    packed_reason: ClassVar[str] = ""
    # Whether the default mode's forward (and the backward traced with it) is one graph under
    # ``torch.compile(fullgraph=True)``; False where it breaks (data-dependent Python control flow,
    # ``.item()``, ...). The test suite checks the declaration both ways, so it cannot go stale.
    compile_fullgraph: ClassVar[bool] = True

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

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        """Mix ``N`` documents packed into one row; no state, cache or score crosses a boundary.

        ``x: [1, T_total, D]`` holds the documents back to back (flash-linear-attention's
        convention) and ``cu_seqlens: [N+1]`` (int64 or int32) their offsets
        ``0 = c_0 < c_1 < ... < c_N = T_total``: document ``i`` is ``x[:, c_i:c_{i+1}]``.
        ``states[i]``, if given, is the state document ``i`` continues from (batch size 1).
        Returns ``y: [1, T_total, D]`` and the list of the ``N`` documents' final states, each a
        state of batch size 1. The result equals running each document alone; this generic
        form ("split") does exactly that, and mixers with ``packed == "native"`` override it.
        """
        lengths = self._check_packed(x, cu_seqlens, states)
        return self._forward_split(x, lengths, states)

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

    def _check_packed(self, x: Tensor, cu_seqlens: Tensor, states: list[State] | None) -> list[int]:
        """Validate a packed call (see :meth:`forward_packed`); returns the document lengths."""
        name = type(self).__name__
        if self.packed == "none":
            raise ConfigError(
                name, "cu_seqlens", "<tensor>", f"packed sequences are not supported: {self.packed_reason}"
            )
        self._check_input(x, None)
        if x.shape[0] != 1:
            raise ConfigError(
                name,
                "x.shape",
                tuple(x.shape),
                "packed input is [1, T_total, D]: documents concatenated in one row",
            )
        lengths = packed_lengths(name, cu_seqlens, x.shape[1])
        if states is not None and len(states) != len(lengths):
            raise ConfigError(
                name, "len(states)", len(states), f"expected one state per document ({len(lengths)})"
            )
        return lengths

    def _forward_split(
        self, x: Tensor, lengths: list[int], states: list[State] | None
    ) -> tuple[Tensor, list[State]]:
        """The generic packed path: each document ``[1, T_i, D]`` through ``forward`` alone."""
        ys, finals = [], []
        # split, not slice: each slice's backward would zero-fill a full-length gradient
        for i, doc in enumerate(x.split(lengths, dim=1)):
            y, state = self(doc, state=None if states is None else states[i])
            ys.append(y)
            finals.append(state)
        return torch.cat(ys, dim=1), finals


def packed_lengths(owner: str, cu_seqlens: Tensor, total: int) -> list[int]:
    """Validate document offsets ``cu_seqlens: [N+1]`` over ``total`` tokens; returns the ``N`` lengths.

    Allowed: a 1-D int64 (or int32) tensor starting at 0, ending at ``total`` and strictly
    increasing (no empty document).
    """
    allowed = (
        f"expected a 1-D int64 tensor of offsets starting at 0, ending at T_total={total}, "
        "strictly increasing"
    )
    if not isinstance(cu_seqlens, Tensor):
        raise ConfigError(owner, "cu_seqlens", type(cu_seqlens).__name__, allowed)
    if cu_seqlens.dtype not in (torch.int64, torch.int32):
        raise ConfigError(owner, "cu_seqlens.dtype", cu_seqlens.dtype, allowed)
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ConfigError(owner, "cu_seqlens.shape", tuple(cu_seqlens.shape), allowed)
    offsets = cu_seqlens.tolist()
    lengths = [b - a for a, b in itertools.pairwise(offsets)]
    if offsets[0] != 0 or offsets[-1] != total or min(lengths) <= 0:
        shown = offsets if len(offsets) <= 12 else [*offsets[:6], "...", *offsets[-6:]]
        raise ConfigError(owner, "cu_seqlens", shown, allowed)
    return lengths


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
