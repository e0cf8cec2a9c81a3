"""Wrappers that make causal token mixers non-causal: both directions of a sequence, or 2-D scans.

- :class:`Bidirectional` runs one mixer over the sequence and a second (independent parameters)
  over the reversed sequence, and combines the two (Vision Mamba, arXiv:2401.09417; ViL,
  arXiv:2406.04303; Hydra, arXiv:2407.09941, reads the sum of both directions as one
  quasi-separable mixing matrix).
- :class:`CrossScan2D` runs one mixer per scan order of an ``H x W`` grid of tokens (VMamba's
  cross-scan, arXiv:2401.10166, is the four orders of :data:`CROSS_SCAN`), puts each output back in
  the grid's layout and averages them.

Both read the whole sequence at once, so they carry no state: the state is ``{}``, ``state_size``
is 0 and passing a non-empty state is an error (see :mod:`mixerlab.layers.noncausal`). Their ``modes`` are
their inner mixers' modes, and setting ``mode`` sets it on every inner mixer.

Shapes: ``x: [B, T, D]`` in and out; a grid is ``H x W`` cells laid out row-major; scan indices
are ``[H W]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_choice, check_positive_int
from mixerlab.layers.noncausal import check_padding_mask, reject_state
from mixerlab.layers.token_mixers.base import State, TokenMixer

COMBINES = ("sum", "concat", "gate")
SCAN_ORDERS = ("row", "column", "row_reverse", "column_reverse")
# VMamba's four-direction cross-scan (arXiv:2401.10166): rows and columns, each both ways.
CROSS_SCAN = SCAN_ORDERS
SCAN_COMBINES = ("mean", "sum")


def _inner_modes(owner: str, mixers: Sequence[TokenMixer]) -> tuple[str, ...]:
    """The modes every inner mixer offers (they are built from one spec, so all of them)."""
    check(len(mixers) > 0, owner, "mixers", list(mixers), "expected at least one token mixer")
    for mixer in mixers:
        check(isinstance(mixer, TokenMixer), owner, "mixers", type(mixer).__name__, "expected TokenMixers")
    modes = tuple(mixers[0].modes)
    check(
        all(tuple(m.modes) == modes for m in mixers),
        owner,
        "mixers",
        [type(m).__name__ for m in mixers],
        "expected mixers with the same modes (built from one spec)",
    )
    dims = {getattr(m, "dim", None) for m in mixers}
    check(len(dims) == 1 and None not in dims, owner, "mixers", sorted(map(str, dims)), "expected one dim")
    return modes


def _permute(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, t]]`` for ``x: [B, T, D]`` and ``index: [B, T]``."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class _Wrapper(TokenMixer):
    """Shared plumbing: inner mixers, their modes, no state."""

    causal = False

    def __init__(self, owner: str, mixers: Sequence[TokenMixer]) -> None:
        # Set before TokenMixer.__init__, which checks ``modes`` and picks the default mode.
        self.modes = _inner_modes(owner, mixers)
        super().__init__()
        self._owner = owner
        self.dim = mixers[0].dim

    def inner_mixers(self) -> list[TokenMixer]:
        raise NotImplementedError

    @TokenMixer.mode.setter
    def mode(self, value: str) -> None:
        TokenMixer.mode.fset(self, value)
        for mixer in self.inner_mixers():
            mixer.mode = value

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {}

    def state_size(self, seq_len: int) -> int:
        return 0  # nothing is carried: a non-causal mixer cannot continue a sequence


class Bidirectional(_Wrapper):
    """Bidirectional mixing of a causal token mixer, as in Vision Mamba (arXiv:2401.09417).

    One mixer reads the sequence forward, a second one (built from the same spec, independent
    parameters) reads it reversed; its output is flipped back and the two are combined::

        y_f = forward_mixer(x),   y_b = flip(backward_mixer(flip(x)))
        "sum":    y = y_f + y_b                                 (Hydra's view, arXiv:2407.09941)
        "concat": y = [y_f, y_b] W_o                            (W_o: 2D -> D)
        "gate":   y = g * y_f + (1 - g) * y_b,  g = sigmoid(x W_g + b_g)
                  (a per-token, per-channel choice of direction, as ViL's and Vision Mamba's
                  gates; W_g and b_g start at zero, so both directions start at weight 1/2)

    Padding: ``mask: [B, T]`` (bool, True = a real token). Padded positions' inputs are zeroed,
    and each direction reads only the real tokens, in order, followed by the padding: the
    forward pass reads the real tokens first (for the usual right padding: unchanged), the
    backward pass reads them reversed *within each row's valid length* (not the full ``T``), so
    the padding stays at the end and a causal inner mixer never reads it before a real token.
    Real outputs therefore never depend on padded positions, and equal each sequence run alone.
    Outputs at padded positions have no meaning.

    No state: the state is ``{}``, ``state_size`` is 0, a non-empty ``state=`` is an error.
    """

    supports_mask = True

    def __init__(
        self, forward_mixer: TokenMixer, backward_mixer: TokenMixer, *, combine: str = "sum"
    ) -> None:
        owner = "Bidirectional"
        check(
            forward_mixer is not backward_mixer,
            owner,
            "backward_mixer",
            "<the forward mixer>",
            "expected a second instance (independent parameters)",
        )
        super().__init__(owner, [forward_mixer, backward_mixer])
        check_choice(owner, "combine", combine, COMBINES)
        self.forward_mixer, self.backward_mixer, self.combine = forward_mixer, backward_mixer, combine
        if combine == "concat":
            self.out_proj = nn.Linear(2 * self.dim, self.dim)
        elif combine == "gate":
            self.gate_proj = nn.Linear(self.dim, self.dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The gate starts at zero (sigmoid 1/2: an even mix of the two directions)."""
        if self.combine == "gate":
            nn.init.zeros_(self.gate_proj.weight)
            nn.init.zeros_(self.gate_proj.bias)

    def inner_mixers(self) -> list[TokenMixer]:
        return [self.forward_mixer, self.backward_mixer]

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        reject_state(self._owner, state)
        check_padding_mask(self._owner, mask, x)
        if mask is None:
            y_f, _ = self.forward_mixer(x)
            y_b, _ = self.backward_mixer(x.flip(1))
            y_b = y_b.flip(1)
        else:
            x = x.masked_fill(~mask[..., None], 0.0)
            forward_index, backward_index = valid_first_orders(mask)
            y_f = self._run(self.forward_mixer, x, forward_index)
            y_b = self._run(self.backward_mixer, x, backward_index)
        return self._combine(x, y_f, y_b), {}

    @staticmethod
    def _run(mixer: TokenMixer, x: Tensor, index: Tensor) -> Tensor:
        """``mixer`` over ``x`` read in the order ``index: [B, T]``, put back in ``x``'s order."""
        y, _ = mixer(_permute(x, index))
        return _permute(y, index.argsort(dim=1))

    def _combine(self, x: Tensor, y_f: Tensor, y_b: Tensor) -> Tensor:
        if self.combine == "sum":
            return y_f + y_b
        if self.combine == "concat":
            return self.out_proj(torch.cat([y_f, y_b], dim=-1))
        gate = torch.sigmoid(self.gate_proj(x))
        return gate * y_f + (1.0 - gate) * y_b


def valid_first_orders(mask: Tensor) -> tuple[Tensor, Tensor]:
    """The two reading orders of :class:`Bidirectional` under a padding ``mask: [B, T]``.

    Returns ``(forward, backward)``, each ``[B, T]`` indices: ``forward`` lists each row's real
    positions in order, then its padded ones; ``backward`` lists the real positions in reverse,
    then the padded ones (for right padding: a flip within the valid length).
    """
    T = mask.shape[1]
    pos = torch.arange(T, device=mask.device).expand_as(mask)
    # Sort keys: real positions first (by position, or reversed), padded ones after (by position).
    forward = torch.where(mask, pos, pos + T).argsort(dim=1)
    backward = torch.where(mask, T - 1 - pos, pos + T).argsort(dim=1)
    return forward, backward


@dataclass(frozen=True)
class ScanOrder2D:
    """One scan order of an ``H x W`` grid (VMamba's cross-scan, arXiv:2401.10166).

    ``index: [H W]``: step ``i`` of the scan visits the row-major cell ``index[i]``, so the scanned
    sequence is ``x[:, index]``; ``inverse: [H W]`` puts it back: ``x[:, index][:, inverse] == x``.
    """

    name: str
    index: Tensor
    inverse: Tensor


def scan_orders(H: int, W: int, names: Sequence[str] = SCAN_ORDERS) -> dict[str, ScanOrder2D]:
    """The scan orders ``names`` (from :data:`SCAN_ORDERS`) of an ``H x W`` grid, by name.

    ``row``: row by row, left to right; ``column``: column by column, top to bottom;
    ``row_reverse`` / ``column_reverse``: the same scans read backwards. The four together are
    VMamba's cross-scan (:data:`CROSS_SCAN`).
    """
    check_positive_int("scan_orders", "H", H)
    check_positive_int("scan_orders", "W", W)
    cells = torch.arange(H * W)
    column = rearrange(cells, "(h w) -> (w h)", h=H)  # the row-major cells read column by column
    indices = {"row": cells, "column": column, "row_reverse": cells.flip(0), "column_reverse": column.flip(0)}
    orders = {}
    for name in names:
        check_choice("scan_orders", "names", name, SCAN_ORDERS)
        orders[name] = ScanOrder2D(name, indices[name], indices[name].argsort())
    return orders


class CrossScan2D(_Wrapper):
    """2-D cross-scan mixing of causal token mixers, VMamba's SS2D (arXiv:2401.10166).

    The ``H x W`` grid tokens (row-major) are read in each scan order of ``orders`` (default the
    four directions of :data:`CROSS_SCAN`), each by its own mixer (built from one spec, independent
    parameters); each output is put back in the grid's layout and the outputs are averaged
    (``combine="mean"``) or summed (``"sum"``)::

        y = mean_k  unscan_k(mixer_k(scan_k(x)))

    Tokens beyond the grid: the first ``num_prefix_tokens`` tokens (class tokens, registers) take
    part in every scan at its *end*, so that with causal inner mixers a class token reads the whole
    grid in every direction (a class token in front would read nothing but itself, and a
    class-token head would learn nothing; Vision Mamba, arXiv:2401.09417, moves it to the middle
    for the same reason). The sequence must be ``num_prefix_tokens + H * W`` tokens long.

    No padding mask (a grid has no padding: a mask is an error) and no state (the state is
    ``{}``, ``state_size`` is 0, a non-empty ``state=`` is an error).
    """

    def __init__(
        self,
        mixers: Sequence[TokenMixer],
        *,
        grid: tuple[int, int],
        orders: Sequence[str] = CROSS_SCAN,
        num_prefix_tokens: int = 0,
        combine: str = "mean",
    ) -> None:
        owner = "CrossScan2D"
        check(isinstance(grid, (tuple, list)) and len(grid) == 2, owner, "grid", grid, "expected (H, W)")
        H, W = grid
        check_positive_int(owner, "grid[0]", H)
        check_positive_int(owner, "grid[1]", W)
        check(
            not isinstance(orders, str) and len(orders) > 0,
            owner,
            "orders",
            orders,
            f"expected a non-empty list of scan orders from {list(SCAN_ORDERS)}",
        )
        orders = list(orders)
        check(
            len(orders) == len(mixers),
            owner,
            "orders",
            orders,
            f"expected one scan order per mixer ({len(mixers)} mixers)",
        )
        check(
            len({id(m) for m in mixers}) == len(mixers),
            owner,
            "mixers",
            "<the same instance twice>",
            "expected one instance per scan order (independent parameters)",
        )
        check(
            isinstance(num_prefix_tokens, int) and num_prefix_tokens >= 0,
            owner,
            "num_prefix_tokens",
            num_prefix_tokens,
            "expected an integer >= 0",
        )
        check_choice(owner, "combine", combine, SCAN_COMBINES)
        super().__init__(owner, list(mixers))
        self.grid, self.orders = (H, W), tuple(orders)
        self.num_prefix_tokens, self.combine = num_prefix_tokens, combine
        self.mixers = nn.ModuleList(mixers)
        size = (len(orders), num_prefix_tokens + H * W)
        self.register_buffer("index", torch.empty(size, dtype=torch.long), persistent=False)
        self.register_buffer("inverse", torch.empty(size, dtype=torch.long), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The scan-order tables: computed from the grid, recomputed here so that a meta-built
        wrapper works after ``to_empty`` (the inner mixers reset themselves)."""
        (H, W), P = self.grid, self.num_prefix_tokens
        with torch.device(self.index.device):
            table = scan_orders(H, W, self.orders)
            prefix = torch.arange(P)
            # Whole-sequence indices [K, P + H W]: the grid in order k, then the prefix tokens.
            index = torch.stack([torch.cat([P + table[o].index, prefix]) for o in self.orders])
        self.index.copy_(index)
        self.inverse.copy_(index.argsort(dim=1))

    def inner_mixers(self) -> list[TokenMixer]:
        return list(self.mixers)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        reject_state(self._owner, state)
        H, W = self.grid
        if x.shape[1] != self.num_prefix_tokens + H * W:
            raise ConfigError(
                self._owner,
                "grid",
                self.grid,
                f"num_prefix_tokens + H * W = {self.num_prefix_tokens} + {H * W} must equal the "
                f"sequence length T = {x.shape[1]}",
            )
        y = None
        for mixer, index, inverse in zip(self.mixers, self.index, self.inverse):
            y_k, _ = mixer(x[:, index])
            y = y_k[:, inverse] if y is None else y + y_k[:, inverse]
        return (y / len(self.mixers) if self.combine == "mean" else y), {}
