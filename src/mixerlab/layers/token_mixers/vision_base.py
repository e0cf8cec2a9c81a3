"""What every image token mixer shares: a grid of tokens, prefix tokens, no state, no causal form.

An image mixer mixes the tokens of an ``H x W`` patch grid (row-major, as the patch stem lays
them out) behind ``num_prefix_tokens`` class or register tokens. It is non-causal by nature: a
convolution, a pooling window or a token MLP reads neighbours on every side, so there is no
causal form (``causal = False``; a causal model that asks for one is an error) and no state
(``init_state`` is ``{}``, ``state_size`` 0, see :mod:`mixerlab.layers.noncausal`).

The grid comes from the model: :func:`mixerlab.layers.mixing.make_mixer` passes the stem's
``grid`` and ``num_prefix_tokens`` to every mixer whose constructor takes ``grid``. With
``grid=None`` (a mixer built alone) a mixer that works at any length reads the tokens after the
prefix as one row (``1 x (T - P)``); a mixer whose weights depend on the number of tokens (a
token MLP) needs the grid. ``num_tokens`` is the number of tokens a mixer requires (None: any).

Prefix tokens take part through each mixer's own rule (its docstring): for the spatial operators
(convolutions, pooling) a prefix token reads the mean of the grid, the global average pooling a
ConvNet's head would take, so that a class token is never left out of the mixing.

Padding masks: a grid has no padding, so a mask is an error (``supports_mask = False``). Packed
documents are an error too (``packed = "none"``): a packed row is not an image.

Shapes: ``x: [B, T, D]`` with ``T = P + H W``; grid tensors ``[B, D, H, W]``; prefix ``[B, P, D]``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.layers.noncausal import reject_state
from mixerlab.layers.token_mixers.base import State, TokenMixer

GridSpec = tuple[int, int] | list[int] | None


class ImageMixer(TokenMixer):
    """Base class of the image mixers (see the module docstring)."""

    causal: ClassVar[bool] = False
    noncausal: ClassVar[str] = "native"
    packed: ClassVar[str] = "none"
    packed_reason: ClassVar[str] = "an image mixer mixes an H x W grid of one image; a packed row is not one"
    # True when the mixer's weights are sized by the number of tokens (token MLPs): it needs a grid.
    needs_grid: ClassVar[bool] = False

    def __init__(self, dim: int, grid: GridSpec, num_prefix_tokens: int, causal: bool) -> None:
        super().__init__()
        name = type(self).__name__
        check_positive_int(name, "dim", dim)
        check(
            causal is False,
            name,
            "causal",
            causal,
            "an image mixer is non-causal by nature (no causal form); use it with mixing 'noncausal'",
        )
        check(
            isinstance(num_prefix_tokens, int) and num_prefix_tokens >= 0,
            name,
            "num_prefix_tokens",
            num_prefix_tokens,
            "expected an integer >= 0",
        )
        if grid is not None:
            check(
                isinstance(grid, (tuple, list))
                and len(grid) == 2
                and all(isinstance(g, int) and g > 0 for g in grid),
                name,
                "grid",
                grid,
                "expected (H, W), two positive integers",
            )
            grid = (int(grid[0]), int(grid[1]))
        elif self.needs_grid:
            raise ConfigError(
                name, "grid", None, "this mixer's weights are sized by the token grid: pass grid=(H, W)"
            )
        self.dim, self.grid, self.num_prefix_tokens = dim, grid, num_prefix_tokens

    @property
    def num_tokens(self) -> int | None:
        """Tokens per example this mixer requires (``P + H W``), or None when any length works."""
        if self.grid is None:
            return None
        return self.num_prefix_tokens + self.grid[0] * self.grid[1]

    # -- the contract ------------------------------------------------------------------------

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {}

    def state_size(self, seq_len: int) -> int:
        return 0

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        reject_state(type(self).__name__, state)
        self._check_input(x, mask)
        self._grid_of(x)  # checks the token count
        return self.mix(x), {}

    def mix(self, x: Tensor) -> Tensor:
        """``[B, T, D] -> [B, T, D]``: the mixing itself (inputs already checked)."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------

    def _grid_of(self, x: Tensor) -> tuple[int, int]:
        """``(H, W)`` of ``x``'s grid: the declared one (checked), else one row of ``T - P``."""
        P, T = self.num_prefix_tokens, x.shape[1]
        if self.grid is None:
            check(T > P, type(self).__name__, "x.shape[1]", T, f"expected more than {P} prefix tokens")
            return 1, T - P
        H, W = self.grid
        if T != P + H * W:
            raise ConfigError(
                type(self).__name__,
                "x.shape[1]",
                T,
                f"expected {P} prefix tokens + the {H}x{W} grid = {P + H * W} tokens",
            )
        return H, W

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [B, P + H W, C] -> (prefix [B, P, C], image [B, C, H, W])``."""
        H, W = self._grid_of(x)
        P = self.num_prefix_tokens
        return x[:, :P], rearrange(x[:, P:], "b (h w) c -> b c h w", h=H, w=W)

    @staticmethod
    def merge(prefix: Tensor, image: Tensor) -> Tensor:
        """``(prefix [B, P, C], image [B, C, H, W]) -> [B, P + H W, C]``."""
        return torch.cat([prefix, rearrange(image, "b c h w -> b (h w) c")], dim=1)

    @staticmethod
    def grid_mean(image: Tensor, num_prefix_tokens: int) -> Tensor:
        """What a prefix token reads through a spatial operator: the grid's mean, ``[B, P, C]``."""
        return image.mean(dim=(2, 3))[:, None, :].expand(-1, num_prefix_tokens, -1)
