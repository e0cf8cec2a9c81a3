"""Small real time series (statsmodels' bundled datasets) as forecasting tasks.

Shapes: ``inputs: [N, context, C]`` float32, ``targets: [N, horizon, C]`` float32, where a window
with forecast origin ``t`` has ``inputs = series[t - context : t]`` and ``targets = series[t : t +
horizon]``. The split is chronological: the first ``1 - val_fraction - test_fraction`` of the series
is the train part, then the validation part, then the test part, and a window belongs to the part
that holds its *targets* (its context may reach back into earlier parts, as it would when
forecasting live). So no target of a later split is ever seen by an earlier split, as input or
target. Windows are cut every ``stride`` steps. Values are standardised per channel with the train
part's mean and std, so the MSE is in units of the series' train variance.

The split does not depend on the seed; the seed orders the training windows (validation and test
windows stay in time order). ``season_length`` is each dataset's period, used by the seasonal
baselines. The data ship inside statsmodels (the ``bench`` extra), imported only when data is made.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import Task, TaskData, generator
from mixerlab.tasks.tables import check_fractions

VAL_FRACTION = TEST_FRACTION = 0.15


def _statsmodels_datasets() -> Any:
    try:
        from statsmodels import datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the real time-series tasks need statsmodels: pip install 'mixerlab[bench]'"
        ) from err
    return datasets


@functools.cache
def load_statsmodels_series(name: str) -> Tensor:
    """One bundled statsmodels dataset as ``[L, 1]`` float64, in time order."""
    datasets = _statsmodels_datasets()
    if name == "sunspots":
        values = datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    elif name == "co2":
        # 59 of the 2284 weekly readings are missing (station outages, none at either end); they
        # are filled by linear interpolation between the neighbouring readings.
        values = datasets.co2.load_pandas().data["co2"].interpolate(method="linear").to_numpy()
    elif name == "elnino":
        # A year x month table (61 x 12, columns JAN..DEC): read row by row it is one monthly series.
        values = datasets.elnino.load_pandas().data.drop(columns="YEAR").to_numpy().reshape(-1)
    else:
        raise ValueError(f"no statsmodels series named {name!r}")
    # A copy: pandas may hand out a read-only view, which torch will not wrap.
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 1)


class SeriesTask(Task):
    """Forecast windows cut from one series; subclasses set the class facts and :meth:`_series`.

    ``owner`` names the task (in errors, and salting its generators), ``length`` is the number of
    time steps (known without loading the data, so options are checked at construction) and
    ``season_length`` its period in steps.
    """

    kind: ClassVar[str] = "forecast"
    objective: ClassVar[str] = "mse"
    owner: ClassVar[str]
    length: ClassVar[int]
    season_length: ClassVar[int]
    num_channels: ClassVar[int] = 1

    def __init__(
        self,
        context: int,
        horizon: int,
        stride: int = 1,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
    ) -> None:
        owner = self.owner
        check_fractions(owner, val_fraction, test_fraction)
        for name, value in (("context", context), ("horizon", horizon), ("stride", stride)):
            check_positive_int(owner, name, value)
        # Ends of the train and validation parts: [0, a) train, [a, b) validation, [b, L) test.
        length = self.length
        a, b = round(length * (1 - val_fraction - test_fraction)), round(length * (1 - test_fraction))
        check(
            context < a,
            owner,
            "context",
            context,
            f"expected at most {a - 1}: the train part holds {a} of the {length} steps",
        )
        # Every part needs at least one window: train origins start at `context`.
        max_horizon = min(a - context, b - a, length - b)
        check(
            horizon <= max_horizon,
            owner,
            "horizon",
            horizon,
            f"expected at most {max_horizon} with context={context} (train / val / test parts of "
            f"{a} / {b - a} / {length - b} steps)",
        )
        self.context, self.horizon, self.stride = context, horizon, stride
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._bounds = {"train": (0, a), "val": (a, b), "test": (b, length)}

    def _series(self) -> Tensor:
        """The whole series ``[L, C]`` float64 in time order."""
        raise NotImplementedError

    def model_io(self) -> dict[str, Any]:
        return {"context": self.context, "horizon": self.horizon, "num_channels": self.num_channels}

    @property
    def train_seq_len(self) -> int:
        return self.context

    def standardised_series(self) -> Tensor:
        """The whole series ``[L, C]`` float32, standardised with the train part's statistics."""
        values = self._series()
        if values.shape != (self.length, self.num_channels):
            raise ValueError(
                f"{self.owner}: the data has shape {tuple(values.shape)}, "
                f"expected {(self.length, self.num_channels)}"
            )
        train = values[: self._bounds["train"][1]]
        std = train.std(0)
        return ((values - train.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))).float()

    def series_part(self, split: str) -> Tensor:
        """The standardised steps of one part, ``[L_split, C]`` (e.g. to fit a statistical model)."""
        lo, hi = self._bounds[split]
        return self.standardised_series()[lo:hi]

    def origins(self, split: str) -> Tensor:
        """Forecast origins ``t`` of the windows whose targets lie in ``split``, in time order."""
        lo, hi = self._bounds[split]
        return torch.arange(max(lo, self.context), hi - self.horizon + 1, self.stride)

    def _windows(self, split: str) -> TaskData:
        values = self.standardised_series()
        # [L, C] -> [L - w + 1, C, w] -> [L - w + 1, w, C]: every window of w = context + horizon steps.
        windows = values.unfold(0, self.context + self.horizon, 1).transpose(1, 2)
        chosen = windows[self.origins(split) - self.context]
        return TaskData(chosen[:, : self.context].contiguous(), chosen[:, self.context :].contiguous())

    def train_data(self, seed: int) -> TaskData:
        data = self._windows("train")
        return data.select(torch.randperm(len(data), generator=generator(seed, self.owner, "order")))

    def val_data(self, seed: int) -> TaskData:
        return self._windows("val")

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._windows("test")]


class StatsmodelsSeries(SeriesTask):
    """A univariate series bundled with statsmodels."""

    def _series(self) -> Tensor:
        return load_statsmodels_series(self.owner)


@TASKS.register(
    "sunspots",
    paper="Yearly sunspot numbers 1700-2008, SIDC (Royal Observatory of Belgium), via statsmodels",
    test_kwargs={"context": 22, "horizon": 11, "stride": 3},
    meta={"metric": "mse", "steps": 309, "season_length": 11},
)
class Sunspots(StatsmodelsSeries):
    """Yearly sunspot numbers 1700-2008 (SIDC, via statsmodels): 309 steps, the ~11-year solar cycle.

    ``inputs: [N, context, 1]``, ``targets: [N, horizon, 1]``.
    """

    owner, length, season_length = "sunspots", 309, 11

    def __init__(
        self,
        context: int = 33,
        horizon: int = 11,
        stride: int = 1,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
    ) -> None:
        super().__init__(context, horizon, stride, val_fraction, test_fraction)


@TASKS.register(
    "co2",
    paper="Weekly atmospheric CO2 at Mauna Loa 1958-2001, Keeling et al. (Scripps), via statsmodels",
    test_kwargs={"context": 104, "horizon": 13, "stride": 13},
    meta={"metric": "mse", "steps": 2284, "season_length": 52},
)
class CO2(StatsmodelsSeries):
    """Weekly atmospheric CO2 at Mauna Loa 1958-2001 (Keeling et al., via statsmodels): 2284 steps.

    The 59 missing readings are filled by linear interpolation. Season: 52 weeks.
    ``inputs: [N, context, 1]``, ``targets: [N, horizon, 1]``.
    """

    owner, length, season_length = "co2", 2284, 52

    def __init__(
        self,
        context: int = 104,
        horizon: int = 52,
        stride: int = 1,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
    ) -> None:
        super().__init__(context, horizon, stride, val_fraction, test_fraction)


@TASKS.register(
    "elnino",
    paper="Monthly El Nino sea surface temperatures 1950-2010 (NOAA), via statsmodels",
    test_kwargs={"context": 24, "horizon": 12, "stride": 6},
    meta={"metric": "mse", "steps": 732, "season_length": 12},
)
class ElNino(StatsmodelsSeries):
    """Monthly El Nino sea surface temperatures 1950-2010 (NOAA, via statsmodels): 732 steps.

    The year x month table is read row by row into one monthly series. Season: 12 months.
    ``inputs: [N, context, 1]``, ``targets: [N, horizon, 1]``.
    """

    owner, length, season_length = "elnino", 732, 12

    def __init__(
        self,
        context: int = 36,
        horizon: int = 12,
        stride: int = 1,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
    ) -> None:
        super().__init__(context, horizon, stride, val_fraction, test_fraction)
