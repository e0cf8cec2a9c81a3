"""N-BEATS, "Neural basis expansion analysis for interpretable time series forecasting" (arXiv:1905.10437).

Stacks of fully-connected blocks with doubly-residual links: block ``l`` reads the residual
``x_l`` of the context, emits a backcast and a forecast through a basis, the next block reads
``x_{l+1} = x_l - backcast_l``, and the model's forecast is the sum of every block's forecast.
Bases: ``generic`` (a learned linear map), ``trend`` (polynomials of degree ``degree`` in time)
and ``seasonality`` (Fourier harmonics); the paper's interpretable model is a trend stack
followed by a seasonality stack.

Channels are independent (N-BEATS is univariate): ``[B, L, C]`` becomes ``B * C`` series of one
channel through the same blocks. The series stem (:class:`~mixerlab.models.stems.SeriesEmbedding`
with one patch spanning the context) applies RevIN and is the first block's input layer, so the
forecast is mapped back to the scale of its context.

Shapes: ``series [B, L, C] -> forecast [B, horizon, C]``; residual ``x_l: [B * C, L]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.stems import Context, SeriesEmbedding
from mixerlab.registry import MODELS

BASES = ("generic", "trend", "seasonality")


class PolynomialBasis(nn.Module):
    """N-BEATS trend basis (arXiv:1905.10437): ``theta [N, degree + 1] -> sum_i theta_i t^i [N, length]``.

    ``t = [0, 1, ..., length - 1] / length``, the paper's time vector.
    """

    def __init__(self, degree: int, length: int) -> None:
        super().__init__()
        self.degree, self.length = degree, length
        self.theta_dim = degree + 1
        self.register_buffer("basis", torch.empty(degree + 1, length), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        t = torch.arange(self.length, dtype=torch.float64, device=self.basis.device) / self.length
        powers = torch.arange(self.degree + 1, dtype=torch.float64, device=self.basis.device)
        self.basis.copy_(t[None, :] ** powers[:, None])

    def forward(self, theta: Tensor) -> Tensor:
        return theta @ self.basis


class FourierBasis(nn.Module):
    """N-BEATS seasonality basis (arXiv:1905.10437): ``cos(2 pi i t), sin(2 pi i t)``, ``i < num_harmonics``.

    ``theta [N, 2 * num_harmonics] -> [N, length]``, ``t`` as in :class:`PolynomialBasis`.
    """

    def __init__(self, num_harmonics: int, length: int) -> None:
        super().__init__()
        self.num_harmonics, self.length = num_harmonics, length
        self.theta_dim = 2 * num_harmonics
        self.register_buffer("basis", torch.empty(2 * num_harmonics, length), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        t = torch.arange(self.length, dtype=torch.float64, device=self.basis.device) / self.length
        i = torch.arange(self.num_harmonics, dtype=torch.float64, device=self.basis.device)
        angle = 2 * math.pi * i[:, None] * t[None, :]
        self.basis.copy_(torch.cat([angle.cos(), angle.sin()]))

    def forward(self, theta: Tensor) -> Tensor:
        return theta @ self.basis


class GenericBasis(nn.Linear):
    """N-BEATS generic basis (arXiv:1905.10437): a learned linear map ``[N, theta_dim] -> [N, length]``."""

    def __init__(self, theta_dim: int, length: int) -> None:
        super().__init__(theta_dim, length)
        self.theta_dim = theta_dim


def make_basis(kind: str, length: int, *, theta_dim: int, degree: int, num_harmonics: int) -> nn.Module:
    if kind == "trend":
        return PolynomialBasis(degree, length)
    if kind == "seasonality":
        return FourierBasis(num_harmonics, length)
    return GenericBasis(theta_dim, length)


class NBeatsBlock(nn.Module):
    """One N-BEATS block (arXiv:1905.10437): ReLU FC stack, then backcast and forecast through a basis.

    ``forward(x [N, L], pre=None) -> (backcast [N, L] or None, forecast [N, horizon])``. ``pre`` is
    the first layer's output when another module computed it (the first block's input layer is the
    series stem); such a block has no first layer of its own. A block built with
    ``backcast=False`` (the last one: its backcast would be discarded) returns ``None``.
    """

    def __init__(
        self,
        context: int,
        horizon: int,
        hidden_dim: int,
        num_layers: int,
        basis: str,
        *,
        theta_dim: int,
        degree: int,
        num_harmonics: int,
        first_layer: bool = True,
        backcast: bool = True,
    ) -> None:
        super().__init__()
        self.first = nn.Linear(context, hidden_dim) if first_layer else None
        self.hidden = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers - 1))
        options = {"theta_dim": theta_dim, "degree": degree, "num_harmonics": num_harmonics}
        self.forecast_basis = make_basis(basis, horizon, **options)
        self.theta_f = nn.Linear(hidden_dim, self.forecast_basis.theta_dim, bias=False)
        self.backcast_basis = make_basis(basis, context, **options) if backcast else None
        self.theta_b = nn.Linear(hidden_dim, self.backcast_basis.theta_dim, bias=False) if backcast else None

    def forward(self, x: Tensor, pre: Tensor | None = None) -> tuple[Tensor | None, Tensor]:
        h = torch.relu(self.first(x) if pre is None else pre)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        forecast = self.forecast_basis(self.theta_f(h))
        backcast = None if self.theta_b is None else self.backcast_basis(self.theta_b(h))
        return backcast, forecast


class NBeats(nn.Module):
    """N-BEATS (arXiv:1905.10437): doubly-residual stacks of FC blocks, ``[B, L, C] -> [B, horizon, C]``.

    ``stacks`` lists each stack's basis, ``blocks_per_stack`` its blocks. ``forward`` returns
    ``(forecast, None)`` like :class:`~mixerlab.models.model.Model` (N-BEATS carries no state).
    """

    def __init__(
        self,
        context: int,
        horizon: int,
        num_channels: int = 1,
        *,
        hidden_dim: int = 64,
        num_layers: int = 4,
        stacks: tuple[str, ...] | list[str] = ("trend", "seasonality"),
        blocks_per_stack: int = 2,
        theta_dim: int = 8,
        degree: int = 3,
        num_harmonics: int | None = None,
        revin: bool = True,
    ) -> None:
        super().__init__()
        owner = "nbeats"
        for name, value in (
            ("context", context),
            ("horizon", horizon),
            ("num_channels", num_channels),
            ("dim", hidden_dim),
            ("num_layers", num_layers),
            ("depth", blocks_per_stack),
            ("theta_dim", theta_dim),
        ):
            check_positive_int(owner, name, value)
        check(isinstance(degree, int) and degree >= 0, owner, "degree", degree, "expected an integer >= 0")
        check(
            isinstance(stacks, list | tuple) and len(stacks) > 0,
            owner,
            "stacks",
            stacks,
            f"expected a non-empty list of {list(BASES)}",
        )
        for kind in stacks:
            check_choice(owner, "stacks", kind, BASES)
        # The paper's harmonics: H/2 - 1 of them for a horizon H (at least one).
        num_harmonics = max(1, horizon // 2 - 1) if num_harmonics is None else num_harmonics
        check_positive_int(owner, "num_harmonics", num_harmonics)
        self.context, self.horizon, self.num_channels = context, horizon, num_channels
        # RevIN and the first block's input layer: one patch spanning the whole context.
        self.stem = SeriesEmbedding(context, 1, hidden_dim, patch_len=context, revin=revin)
        kinds = [kind for kind in stacks for _ in range(blocks_per_stack)]
        options = {"theta_dim": theta_dim, "degree": degree, "num_harmonics": num_harmonics}
        self.blocks = nn.ModuleList(
            NBeatsBlock(
                context,
                horizon,
                hidden_dim,
                num_layers,
                kind,
                first_layer=i > 0,
                backcast=i < len(kinds) - 1,
                **options,
            )
            for i, kind in enumerate(kinds)
        )

    def normalise(self, x: Tensor, context: Context) -> Tensor:
        """RevIN's forward map of ``x: [N, L, 1]`` with the stem's statistics (the first residual)."""
        if not self.stem.revin:
            return x
        mean, std = context["revin"]
        return (x - mean) / std * self.stem.affine_weight + self.stem.affine_bias

    def state_size(self, seq_len: int) -> int:
        """N-BEATS reads the whole context at once and carries nothing: 0."""
        return 0

    def forward(
        self, series: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, None]:
        check(state is None and mask is None, "nbeats", "state", state, "N-BEATS takes no state or mask")
        b = series.shape[0] if isinstance(series, Tensor) else 0
        check(
            isinstance(series, Tensor) and series.dim() == 3 and series.shape[2] == self.num_channels,
            "nbeats",
            "inputs.shape",
            tuple(series.shape) if isinstance(series, Tensor) else type(series).__name__,
            f"expected [B, {self.context}, {self.num_channels}]",
        )
        # [B, L, C] -> [B * C, L, 1]: every channel is its own series through the same blocks.
        x = rearrange(series, "b l c -> (b c) l 1")
        pre, context = self.stem(x)  # [B * C, 1, hidden]: the first block's first layer
        residual = self.normalise(x, context)[..., 0]  # [B * C, L]
        forecast = residual.new_zeros(residual.shape[0], self.horizon)
        for i, block in enumerate(self.blocks):
            backcast, block_forecast = block(residual, pre[:, 0] if i == 0 else None)
            forecast = forecast + block_forecast
            if backcast is not None:
                residual = residual - backcast
        y = self.stem.inverse(forecast[..., None], context)  # [B * C, horizon, 1]
        return rearrange(y, "(b c) h 1 -> b h c", b=b), None


@MODELS.register(
    "nbeats",
    paper="N-BEATS: Neural basis expansion analysis for interpretable time series forecasting",
    arxiv="1905.10437",
    summary="N-BEATS: doubly-residual stacks of FC blocks, trend/seasonality or generic bases.",
    test_kwargs={"context": 13, "horizon": 5, "num_channels": 1, "dim": 8, "depth": 1},
    meta={"kinds": ("forecast",)},
)
def nbeats(
    *,
    context: int,
    horizon: int,
    num_channels: int = 1,
    dim: int = 64,
    depth: int = 2,
    mixer: Any = "none",
    channel_mixer: Any = "none",
    norm: Any = "none",
    stacks: list[str] | tuple[str, ...] = ("trend", "seasonality"),
    num_layers: int = 4,
    theta_dim: int = 8,
    degree: int = 3,
    num_harmonics: int | None = None,
    revin: bool = True,
) -> NBeats:
    """N-BEATS (arXiv:1905.10437) for a forecast task: ``dim`` the FC width, ``depth`` blocks per stack.

    N-BEATS mixes no tokens and has no norm: ``mixer``, ``channel_mixer`` and ``norm`` must stay
    ``"none"`` (any other value is an error rather than silently unused). ``stacks`` lists each
    stack's basis (``generic``, ``trend``, ``seasonality``); the default is the interpretable model.
    """
    for name, value in (("mixer", mixer), ("channel_mixer", channel_mixer), ("norm", norm)):
        check(value == "none", "nbeats", name, value, "'none': N-BEATS is a stack of plain FC blocks")
    return NBeats(
        context,
        horizon,
        num_channels,
        hidden_dim=dim,
        num_layers=num_layers,
        stacks=stacks,
        blocks_per_stack=depth,
        theta_dim=theta_dim,
        degree=degree,
        num_harmonics=num_harmonics,
        revin=revin,
    )
