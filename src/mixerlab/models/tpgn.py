"""TPGN, the temporal model of "PGN: The RNN's New Successor is Effective for Long-Range Time Series
Forecasting" (arXiv:2409.17703), around the ``pgn`` token mixer.

The context of ``L`` steps is read as a 2-D table of ``R`` rows (periods) by ``P`` columns (the
phase within a period), padded in front to whole periods. Two branches:

- long-term: for every phase ``p``, the column ``x[:, p]`` (its value in each period) is a
  sequence of ``R`` steps through PGN, so each phase keeps its own periodic pattern; the output
  after the last period is that phase's representation ``[P, D]``;
- short-term: each row (one period, a patch of ``P`` steps) is embedded by the series stem and
  the ``R`` patch tokens are aggregated by a linear map over rows into one global vector ``[D]``.

Each phase's representation, with the global one, is mapped to that phase's values in the next
``ceil(horizon / P)`` periods, which are read back in time order. Channels are independent and
RevIN-normalised (the series stem), as in the paper's multivariate setting.

Shapes: ``series [B, L, C] -> [B * C, R, P]``; long branch ``[B * C * P, R, D]``; forecast
``[B, horizon, C]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.init import materialize
from mixerlab.layers.token_mixers.base import State
from mixerlab.layers.token_mixers.pgn import ParallelGatedNetwork
from mixerlab.models.stems import SeriesEmbedding
from mixerlab.registry import MODELS


class TPGN(nn.Module):
    """TPGN (arXiv:2409.17703): PGN across periods per phase + aggregated period patches.

    ``series [B, L, C] -> [B, horizon, C]``.

    ``period`` is ``P`` (default: the integer nearest ``sqrt(context)``, the paper's ``O(sqrt L)``
    layout). ``forward`` returns ``(forecast, None)``.
    """

    def __init__(
        self,
        context: int,
        horizon: int,
        num_channels: int = 1,
        *,
        dim: int = 64,
        period: int | None = None,
        revin: bool = True,
    ) -> None:
        super().__init__()
        owner = "tpgn"
        for name, value in (("context", context), ("horizon", horizon), ("num_channels", num_channels)):
            check_positive_int(owner, name, value)
        check_positive_int(owner, "dim", dim)
        period = max(1, round(math.sqrt(context))) if period is None else period
        check_positive_int(owner, "period", period)
        check(period <= context, owner, "period", period, f"expected at most context={context}")
        self.context, self.horizon, self.num_channels, self.period = context, horizon, num_channels, period
        self.rows = math.ceil(context / period)  # R periods, the first padded in front
        self.future_rows = math.ceil(horizon / period)
        # Short-term branch: the stem embeds each period (a patch of P steps) and applies RevIN.
        self.stem = SeriesEmbedding(context, 1, dim, patch_len=period, revin=revin)
        self.row_mix = nn.Linear(self.rows, 1)
        # Long-term branch: each phase's value per period is embedded, then PGN runs across periods.
        self.value_embed = nn.Linear(1, dim)
        # Built without drawing and initialised children first, the order reset_all draws in, so a
        # seeded TPGN equals a materialised meta-built one bit for bit.
        device = torch.empty(()).device
        with torch.device("meta"):
            pgn = ParallelGatedNetwork(dim, max_len=self.rows)
        self.pgn = materialize(pgn, device)
        self.out = nn.Linear(2 * dim, self.future_rows)

    def state_size(self, seq_len: int) -> int:
        """TPGN reads its whole context at once and carries nothing between calls: 0."""
        return 0

    def forward(
        self, series: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, None]:
        check(state is None and mask is None, "tpgn", "state", state, "TPGN takes no state or mask")
        check(
            isinstance(series, Tensor) and series.dim() == 3 and series.shape[2] == self.num_channels,
            "tpgn",
            "inputs.shape",
            tuple(series.shape) if isinstance(series, Tensor) else type(series).__name__,
            f"expected [B, {self.context}, {self.num_channels}]",
        )
        b = series.shape[0]
        x = rearrange(series, "b l c -> (b c) l 1")  # channels are independent series
        patches, context = self.stem(x)  # [N, R, D]
        short = self.row_mix(rearrange(patches, "n r d -> n d r"))[..., 0]  # [N, D]
        values = x
        if self.stem.revin:
            mean, std = context["revin"]
            values = (x - mean) / std * self.stem.affine_weight + self.stem.affine_bias
        pad = self.rows * self.period - self.context
        values = torch.cat([values[:, :1].expand(-1, pad, -1), values], dim=1)  # as the stem pads
        # [N, R * P, 1] -> [N * P, R, 1]: each phase's sequence over periods.
        columns = rearrange(values, "n (r p) 1 -> (n p) r 1", p=self.period)
        long, _ = self.pgn(self.value_embed(columns))  # [N * P, R, D], causal across periods
        long = rearrange(long[:, -1], "(n p) d -> n p d", p=self.period)
        fused = torch.cat([long, short[:, None].expand(-1, self.period, -1)], dim=-1)  # [N, P, 2D]
        future = self.out(fused)  # [N, P, future rows]
        y = rearrange(future, "n p r -> n (r p) 1")[:, : self.horizon]
        y = self.stem.inverse(y, context)
        return rearrange(y, "(b c) h 1 -> b h c", b=b), None


@MODELS.register(
    "tpgn",
    paper="PGN: The RNN's New Successor is Effective for Long-Range Time Series Forecasting (TPGN)",
    arxiv="2409.17703",
    summary="TPGN: PGN across periods per phase (long-term) + aggregated period patches (short-term).",
    test_kwargs={"context": 13, "horizon": 5, "num_channels": 1, "dim": 8, "period": 4},
    meta={"kinds": ("forecast",)},
)
def tpgn(
    *,
    context: int,
    horizon: int,
    num_channels: int = 1,
    dim: int = 64,
    depth: int = 1,
    mixer: Any = "pgn",
    channel_mixer: Any = "none",
    norm: Any = "none",
    period: int | None = None,
    revin: bool = True,
) -> TPGN:
    """TPGN (arXiv:2409.17703) for a forecast task; ``dim`` is its width.

    Its mixer is PGN by construction and it has one PGN layer, no channel mixer and no norm:
    ``mixer`` must be ``"pgn"`` or ``"none"``, ``depth`` 1, ``channel_mixer`` and ``norm`` ``"none"``
    (other values are errors rather than silently unused).
    """
    check(mixer in ("pgn", "none"), "tpgn", "mixer", mixer, "'pgn' (or 'none'): TPGN's mixer is PGN")
    check(depth == 1, "tpgn", "depth", depth, "expected 1: TPGN has one PGN layer")
    for name, value in (("channel_mixer", channel_mixer), ("norm", norm)):
        check(value == "none", "tpgn", name, value, "'none': TPGN has no channel mixer or norm")
    return TPGN(context, horizon, num_channels, dim=dim, period=period, revin=revin)
