"""Baselines practitioners reach for instead of a neural network, registered in ``BASELINES``.

Each baseline is built from keyword options, ``fit(task, train, val)`` on a task's data and
``predict(task, data)`` in the model's output format, so the task's objective scores it as it
scores a model:

- classify: ``[N, num_classes]`` log-probabilities;
- regress: ``[N]``;
- forecast: ``[N, horizon, C]`` from ``inputs: [N, context, C]``.

``num_parameters()`` is the baseline's size in its own currency (tree nodes, coefficients,
smoothing parameters), documented per class. ``kinds`` lists the task kinds a baseline handles;
any other kind is a :class:`ConfigError`. scikit-learn and statsmodels (the ``bench`` extra) are
imported only inside ``fit`` / ``predict``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.registry import BASELINES
from mixerlab.tasks.base import Task, TaskData

# Floor of a predicted probability, so that log-probabilities stay finite.
MIN_PROB = 1e-12


class Baseline:
    """What every baseline shares: its registry name, the kinds it handles, the kind check."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        # Declared so that a baseline without options still rejects unknown ones: the registry
        # reads the signature, and object's own takes anything.
        pass

    def check_kind(self, task: Task) -> None:
        check(
            task.kind in self.kinds,
            f"baseline {self.name!r}",
            "kind",
            task.kind,
            f"this baseline handles the task kinds {list(self.kinds)}",
        )

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        raise NotImplementedError

    def predict(self, task: Task, data: TaskData) -> Tensor:
        raise NotImplementedError

    def num_parameters(self) -> int:
        raise NotImplementedError

    def _fitted(self, value: Any) -> Any:
        if value is None:
            raise RuntimeError(f"baseline {self.name!r}: call fit() before predict()")
        return value


# --- classify / regress: features as one matrix ------------------------------------------------


def feature_matrix(data: TaskData, one_hot: list[int] | None = None) -> tuple[Any, list[bool]]:
    """``X: [N, F + C]`` float64 numpy and which columns are categorical.

    Images ``[N, C, H, W]`` are flattened to pixels. A table's categorical fields ``[N, C]`` are
    appended as integer codes, or, when ``one_hot`` gives their cardinalities, as one-hot columns
    (for linear models, to which a code's size means nothing).
    """
    if isinstance(data.inputs, Tensor):
        x = data.inputs.flatten(1).double()
        return x.numpy(), [False] * x.shape[1]
    parts, categorical = [data.inputs["numerical"].double()], [False] * data.inputs["numerical"].shape[1]
    if "categorical" in data.inputs:
        codes = data.inputs["categorical"]
        if one_hot is None:
            parts.append(codes.double())
            categorical += [True] * codes.shape[1]
        else:
            onehots = [F.one_hot(codes[:, j], card).double() for j, card in enumerate(one_hot)]
            parts += onehots
            categorical += [False] * sum(one_hot)
    return torch.cat(parts, 1).numpy(), categorical


def class_log_probs(proba: Any, classes: Any, num_classes: int) -> Tensor:
    """``[N, num_classes]`` log-probabilities from a scikit-learn ``predict_proba`` over ``classes``.

    A class absent from the training rows gets probability ``MIN_PROB``.
    """
    full = torch.full((proba.shape[0], num_classes), MIN_PROB, dtype=torch.float64)
    full[:, torch.as_tensor(classes, dtype=torch.long)] = torch.as_tensor(proba, dtype=torch.float64)
    return full.clamp_min(MIN_PROB).log().float()


@BASELINES.register(
    "hist_gradient_boosting",
    paper="LightGBM: A Highly Efficient Gradient Boosting Decision Tree (Ke et al., NeurIPS 2017)",
    summary="scikit-learn's histogram gradient-boosted trees; categorical fields split natively.",
)
class HistGradientBoosting(Baseline):
    """Histogram gradient boosting, LightGBM (Ke et al., NeurIPS 2017; no arXiv), via scikit-learn.

    ``HistGradientBoostingClassifier`` / ``Regressor`` on ``X: [N, F + C]``; a table's categorical
    fields are declared categorical (split by category sets, not by code order). Early stopping is
    off, so a run is exactly ``max_iter`` rounds and the result depends only on ``seed``.
    ``num_parameters()`` counts tree nodes (splits and leaves) over all trees.
    """

    name = "hist_gradient_boosting"
    kinds = ("classify", "regress")

    def __init__(
        self,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        l2_regularization: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_positive_int(self.name, "max_iter", max_iter)
        check(
            isinstance(max_leaf_nodes, int) and max_leaf_nodes >= 2,
            self.name,
            "max_leaf_nodes",
            max_leaf_nodes,
            "expected an integer >= 2",
        )
        check(learning_rate > 0, self.name, "learning_rate", learning_rate, "expected > 0")
        check(l2_regularization >= 0, self.name, "l2_regularization", l2_regularization, "expected >= 0")
        self.options = {
            "max_iter": max_iter,
            "learning_rate": learning_rate,
            "max_leaf_nodes": max_leaf_nodes,
            "l2_regularization": l2_regularization,
            "random_state": seed,
            "early_stopping": False,
        }
        self.model: Any = None

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        self.check_kind(task)
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        x, categorical = feature_matrix(train)
        cls = HistGradientBoostingClassifier if task.kind == "classify" else HistGradientBoostingRegressor
        self.model = cls(categorical_features=categorical if any(categorical) else None, **self.options)
        self.model.fit(x, train.targets.numpy())

    def predict(self, task: Task, data: TaskData) -> Tensor:
        self.check_kind(task)
        model = self._fitted(self.model)
        x, _ = feature_matrix(data)
        if task.kind == "classify":
            return class_log_probs(model.predict_proba(x), model.classes_, task.model_io()["num_classes"])
        return torch.as_tensor(model.predict(x), dtype=torch.float32)

    def num_parameters(self) -> int:
        # scikit-learn keeps the trees only in a private list: one TreePredictor per class per round.
        model = self._fitted(self.model)
        return sum(len(tree.nodes) for round_ in model._predictors for tree in round_)


@BASELINES.register(
    "linear",
    paper="Logistic regression (Cox 1958) / ridge regression (Hoerl & Kennard 1970)",
    summary="A linear model: multinomial logistic regression or ridge, categorical fields one-hot.",
)
class Linear(Baseline):
    """Logistic regression (Cox 1958) for classify, ridge regression (Hoerl & Kennard 1970) for regress.

    Both on ``X: [N, F + sum(cardinalities)]`` (categorical fields one-hot) with an L2 penalty of
    strength ``l2`` (scikit-learn's ``C = 1 / l2`` for the logistic model, ``alpha = l2`` for
    ridge). ``num_parameters()`` counts coefficients and intercepts.
    """

    name = "linear"
    kinds = ("classify", "regress")

    def __init__(self, l2: float = 1.0, max_iter: int = 2000) -> None:
        check(l2 > 0, self.name, "l2", l2, "expected > 0")
        check_positive_int(self.name, "max_iter", max_iter)
        self.l2, self.max_iter = l2, max_iter
        self.model: Any = None

    def _x(self, task: Task, data: TaskData) -> Any:
        return feature_matrix(data, one_hot=task.model_io().get("cardinalities") or None)[0]

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        self.check_kind(task)
        from sklearn.linear_model import LogisticRegression, Ridge

        if task.kind == "classify":
            self.model = LogisticRegression(C=1.0 / self.l2, max_iter=self.max_iter)
        else:
            self.model = Ridge(alpha=self.l2)
        self.model.fit(self._x(task, train), train.targets.numpy())

    def predict(self, task: Task, data: TaskData) -> Tensor:
        self.check_kind(task)
        model = self._fitted(self.model)
        x = self._x(task, data)
        if task.kind == "classify":
            return class_log_probs(model.predict_proba(x), model.classes_, task.model_io()["num_classes"])
        return torch.as_tensor(model.predict(x), dtype=torch.float32)

    def num_parameters(self) -> int:
        model = self._fitted(self.model)
        # Ridge's intercept is a plain float for one target; LogisticRegression's an array.
        return int(model.coef_.size + getattr(model.intercept_, "size", 1))


@BASELINES.register(
    "naive_mean",
    paper="The constant predictor: majority class / train mean",
    summary="Predicts the train split's class frequencies or its mean target: the floor to beat.",
)
class NaiveMean(Baseline):
    """The constant predictor (no paper): train class frequencies (argmax: the majority class) or mean.

    classify: every row gets the train split's class frequencies as log-probabilities ``[N, K]``;
    regress: every row gets the train mean ``[N]``. ``num_parameters()``: ``K``, or 1.
    """

    name = "naive_mean"
    kinds = ("classify", "regress")

    def __init__(self) -> None:
        super().__init__()
        self.value: Tensor | None = None

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        self.check_kind(task)
        if task.kind == "classify":
            counts = torch.bincount(train.targets, minlength=task.model_io()["num_classes"]).double()
            self.value = (counts / counts.sum()).clamp_min(MIN_PROB).log().float()
        else:
            self.value = train.targets.double().mean().float().reshape(())

    def predict(self, task: Task, data: TaskData) -> Tensor:
        self.check_kind(task)
        value = self._fitted(self.value)
        return value.expand(len(data), *value.shape).clone()

    def num_parameters(self) -> int:
        return self._fitted(self.value).numel()


# --- forecast -----------------------------------------------------------------------------------


def _season_length(task: Task) -> int:
    season = getattr(task, "season_length", None)
    if not isinstance(season, int) or season < 1:
        raise ConfigError(task.__class__.__name__, "season_length", season, "expected a positive integer")
    return season


@BASELINES.register(
    "seasonal_naive",
    paper="Seasonal naive method (Hyndman & Athanasopoulos, Forecasting: Principles and Practice)",
    summary="Repeats the last season of the context; a season length of 1 repeats the last value.",
)
class SeasonalNaive(Baseline):
    """Seasonal naive forecast (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*).

    ``inputs: [N, context, C] -> [N, horizon, C]``: step ``k`` of the horizon repeats the context's
    value one or more whole seasons earlier, ``x[context - m + (k mod m)]`` with ``m`` the task's
    ``season_length``. Nothing is fitted: ``num_parameters()`` is 0.
    """

    name = "seasonal_naive"
    kinds = ("forecast",)

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        self.check_kind(task)

    def predict(self, task: Task, data: TaskData) -> Tensor:
        self.check_kind(task)
        io, m = task.model_io(), _season_length(task)
        context, horizon = io["context"], io["horizon"]
        check(context >= m, self.name, "context", context, f"expected >= the season length {m} of the task")
        steps = context - m + torch.arange(horizon) % m
        return data.inputs[:, steps]

    def num_parameters(self) -> int:
        return 0


def holt_winters_initial_state(
    y: Tensor, season_length: int, trend: bool, seasonal: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """A simple start for each row of ``y: [R, T]``: ``level, trend: [R]`` and ``season: [R, m]``.

    Seasonal, with ``k = T // m`` whole seasons: the level is the mean of the first season, the
    trend the step between the first and the k-th season's means per time step (0 if ``k == 1``),
    and the seasonal indices the average over the k seasons of each value minus its season's mean
    (one season alone would make them as noisy as the data). Without a season: the first value
    and the first difference. (statsmodels' "heuristic" start fits a decomposition instead; this
    one is cheap enough to run on every window at once.)
    """
    if not seasonal:
        slope = y[:, 1] - y[:, 0] if trend else torch.zeros_like(y[:, 0])
        return y[:, 0], slope, torch.zeros_like(y[:, :1])
    m = season_length
    k = y.shape[1] // m
    # [R, k * m] -> [R, k, m]: whole seasons from the start of the context.
    seasons = y[:, : k * m].reshape(len(y), k, m)
    means = seasons.mean(2)  # [R, k]
    slope = (means[:, -1] - means[:, 0]) / ((k - 1) * m) if trend and k > 1 else torch.zeros_like(means[:, 0])
    return means[:, 0], slope, (seasons - means[:, :, None]).mean(1)


def holt_winters_forecast(
    y: Tensor,
    horizon: int,
    alpha: Tensor,
    beta: Tensor,
    gamma: Tensor,
    season_length: int,
    trend: bool,
    seasonal: bool,
) -> Tensor:
    """Additive Holt-Winters (Winters 1960) run over each row of ``y: [R, T]``; ``[R, horizon]``.

    ``alpha, beta, gamma: [R]`` are the smoothing parameters (``beta`` unused without trend,
    ``gamma`` without season). The updates are statsmodels' ``ExponentialSmoothing`` ones:

        level_t  = alpha (y_t - s_{t-m}) + (1 - alpha)(level_{t-1} + b_{t-1})
        b_t      = beta (level_t - level_{t-1}) + (1 - beta) b_{t-1}
        s_t      = gamma (y_t - level_{t-1} - b_{t-1}) + (1 - gamma) s_{t-m}
        forecast_{T+h} = level_T + h b_T + s_{T+h-m(1 + (h-1)//m)}

    started from :func:`holt_winters_initial_state` (its seasonal indices are the ``s`` of the
    first ``m`` steps). This equals statsmodels with ``initialization_method="known"`` except at
    horizons ``h = m, 2m, ...``, where statsmodels reads the seasonal index from before the last
    update and this reads the updated one, as the textbook forecast does (Hyndman &
    Athanasopoulos, *Forecasting: Principles and Practice*, section 8.3).
    """
    alpha, beta, gamma = (p.to(y.dtype) for p in (alpha, beta, gamma))
    m = season_length if seasonal else 1
    level, slope, season0 = holt_winters_initial_state(y, season_length, trend, seasonal)
    # seasons[:, t] is s_{t - m}, the index read at step t; it grows by one column per step.
    seasons = [season0[:, j] for j in range(m)]
    for t in range(y.shape[1]):
        s_prev = seasons[t] if seasonal else 0.0
        new_level = alpha * (y[:, t] - s_prev) + (1 - alpha) * (level + slope)
        if seasonal:
            seasons.append(gamma * (y[:, t] - level - slope) + (1 - gamma) * seasons[t])
        if trend:
            slope = beta * (new_level - level) + (1 - beta) * slope
        level = new_level
    steps = torch.arange(1, horizon + 1, dtype=y.dtype)
    out = level[:, None] + steps * slope[:, None]
    if seasonal:
        last = torch.stack(seasons[-m:], 1)  # [R, m]: s of the context's last season
        out = out + last[:, (torch.arange(horizon) % m)]
    return out


SMOOTHING = ("smoothing_level", "smoothing_trend", "smoothing_seasonal")


def _finite(value: Any) -> float:
    value = float("nan") if value is None else float(value)
    return value if value == value else 0.0  # NaN != NaN


@BASELINES.register(
    "exponential_smoothing",
    paper="Forecasting sales by exponentially weighted moving averages (Winters 1960, Management Science)",
    summary="Holt-Winters: smoothing parameters fitted once on the train part, state run per window.",
)
class ExponentialSmoothing(Baseline):
    """Holt-Winters exponential smoothing (Winters 1960, *Management Science* 6(3)).

    ``inputs: [N, context, C] -> [N, horizon, C]``. To stay fast on every window, the smoothing
    parameters are fitted ONCE per channel by statsmodels' ``ExponentialSmoothing`` on the task's
    contiguous train part (``task.series_part("train")``); each window then runs the additive
    recursion (:func:`holt_winters_forecast`, all windows at once) over its own context from a
    simple start, and forecasts. Trend: additive when ``trend`` (off by default). Season:
    additive when ``seasonal`` and the context holds at least two seasons of the task's
    ``season_length`` (> 1). ``num_parameters()``: smoothing parameters, per channel.
    """

    name = "exponential_smoothing"
    kinds = ("forecast",)

    def __init__(self, trend: bool = False, seasonal: bool = True) -> None:
        check(isinstance(trend, bool), self.name, "trend", trend, "expected True or False")
        check(isinstance(seasonal, bool), self.name, "seasonal", seasonal, "expected True or False")
        self.trend, self.seasonal = trend, seasonal
        self.params: Tensor | None = None  # [C, 3]: alpha, beta, gamma per channel
        self.use_season = False

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        self.check_kind(task)
        try:
            from statsmodels.tsa.holtwinters import ExponentialSmoothing as StatsmodelsETS
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "exponential_smoothing needs statsmodels: pip install 'mixerlab[bench]'"
            ) from err
        series_part = getattr(task, "series_part", None)
        if series_part is None:
            raise ConfigError(
                f"baseline {self.name!r}", "task", task.__class__.__name__, "expected a SeriesTask"
            )
        m, context = _season_length(task), task.model_io()["context"]
        self.m = m
        self.use_season = self.seasonal and m > 1 and context >= 2 * m
        series = series_part("train").double()  # [L_train, C]
        params = []
        for channel in series.T:
            model = StatsmodelsETS(
                channel.numpy(),
                trend="add" if self.trend else None,
                seasonal="add" if self.use_season else None,
                seasonal_periods=m if self.use_season else None,
                initialization_method="estimated",
            )
            with warnings.catch_warnings():
                # The optimiser's convergence notes on short series are not actionable here.
                warnings.simplefilter("ignore")
                fitted = model.fit()
            # statsmodels reports NaN (or nothing) for the parameter of a component that is off.
            params.append([_finite(fitted.params.get(k)) for k in SMOOTHING])
        self.params = torch.tensor(params, dtype=torch.float64)

    def predict(self, task: Task, data: TaskData) -> Tensor:
        self.check_kind(task)
        params = self._fitted(self.params)
        x = data.inputs.double()  # [N, context, C]
        n, _, c = x.shape
        # [N, context, C] -> [N * C, context]: every (window, channel) is one independent run.
        rows = x.permute(0, 2, 1).reshape(n * c, -1)
        alpha, beta, gamma = params.repeat(n, 1).unbind(1)
        out = holt_winters_forecast(
            rows,
            task.model_io()["horizon"],
            alpha,
            beta,
            gamma,
            self.m,
            trend=self.trend,
            seasonal=self.use_season,
        )
        # [N * C, horizon] -> [N, horizon, C]
        return out.reshape(n, c, -1).permute(0, 2, 1).float()

    def num_parameters(self) -> int:
        params = self._fitted(self.params)
        return params.shape[0] * (1 + int(self.trend) + int(self.use_season))


# The prior-fitted network is a baseline too (its own module: it brings a network and a prior);
# imported last, as it builds on Baseline above, so that importing this module registers it.
from mixerlab.bench import pfn_baseline as _pfn_baseline  # noqa: E402, F401
