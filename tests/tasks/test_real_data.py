"""Offline real-data loaders (images, tables, series): formats, seeds, splits and standardisation."""

from __future__ import annotations

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.registry import TASKS
from mixerlab.tasks import create_task
from mixerlab.tasks.base import TaskData
from mixerlab.tasks.series import SeriesTask
from mixerlab.tasks.tables import shuffled_split

pytest.importorskip("sklearn")

TABLES = ["breast_cancer", "wine", "diabetes", "synthetic_table"]
ROW_TASKS = ["digits", *TABLES]
SERIES = ["sunspots", "co2", "elnino"]


def tiny(name: str, **overrides):
    return create_task(name, **{**TASKS.entry(name).test_kwargs, **overrides})


def splits(task, seed: int) -> dict[str, TaskData]:
    (test,) = task.eval_data(seed)
    return {"train": task.train_data(seed), "val": task.val_data(seed), "test": test}


def rows(data: TaskData) -> set[tuple[float, ...]]:
    """Each example's inputs as one hashable row (numerical and categorical side by side)."""
    inputs = data.inputs
    if isinstance(inputs, dict):
        parts = [inputs["numerical"].double()]
        if "categorical" in inputs:
            parts.append(inputs["categorical"].double())
        flat = torch.cat(parts, 1)
    else:
        flat = inputs.flatten(1).double()
    return {tuple(r) for r in flat.round(decimals=5).tolist()}


def test_digits_images_format():
    task = create_task("digits")
    assert task.model_io() == {"image_size": 8, "in_chans": 1, "num_classes": 10}
    assert task.kind == "classify" and task.objective == "cross_entropy" and task.train_seq_len == 64
    parts = splits(task, 0)
    assert sum(len(p) for p in parts.values()) == 1797
    for data in parts.values():
        assert data.inputs.shape[1:] == (1, 8, 8) and data.inputs.dtype == torch.float32
        assert float(data.inputs.min()) >= 0 and float(data.inputs.max()) <= 1
        assert data.targets.dtype == torch.long and set(data.targets.tolist()) <= set(range(10))
        torch.testing.assert_close(data.slices["label"], data.targets)
    assert abs(len(parts["test"]) / 1797 - 0.15) < 0.01


@pytest.mark.parametrize("name", TABLES)
def test_table_format_and_model_io(name):
    task = tiny(name)
    io = task.model_io()
    for data in splits(task, 0).values():
        numerical = data.inputs["numerical"]
        assert numerical.dtype == torch.float32 and numerical.shape[1] == io["num_features"]
        if io["cardinalities"]:
            categorical = data.inputs["categorical"]
            assert categorical.dtype == torch.long and categorical.shape[1] == len(io["cardinalities"])
            assert (categorical >= 0).all() and (categorical < torch.tensor(io["cardinalities"])).all()
        else:
            assert set(data.inputs) == {"numerical"}
        if task.kind == "classify":
            assert data.targets.dtype == torch.long and "num_outputs" not in io
            assert int(data.targets.max()) < io["num_classes"]
        else:
            assert data.targets.dtype == torch.float32 and io["num_outputs"] == 1 and "num_classes" not in io
    assert task.train_seq_len == io["num_features"] + len(io["cardinalities"])


@pytest.mark.parametrize("name", TABLES)
def test_table_standardised_with_train_statistics(name):
    task = tiny(name)
    train = task.train_data(0)
    x = train.inputs["numerical"].double()
    torch.testing.assert_close(x.mean(0), torch.zeros(x.shape[1], dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(x.shape[1], dtype=torch.float64), atol=1e-5, rtol=0)
    if task.kind == "regress":
        y = train.targets.double()
        assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-5
        # The held-out rows use the train statistics, not their own: not exactly standardised.
        assert abs(float(task.eval_data(0)[0].targets.double().mean())) > 1e-6


@pytest.mark.parametrize("name", ROW_TASKS)
def test_row_splits_seeded_and_disjoint(name):
    task = tiny(name)
    a, again, b = splits(task, 0), splits(task, 0), splits(task, 1)
    for split in a:
        torch.testing.assert_close(a[split].inputs, again[split].inputs)
        torch.testing.assert_close(a[split].targets, again[split].targets)
    assert not torch.equal(a["test"].targets, b["test"].targets) or len(a["test"]) != len(b["test"])
    if name != "digits":  # the digits hold a few identical images; their indices are checked below
        train, val, test = (rows(a[s]) for s in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)


def test_shuffled_split_partitions_the_rows():
    parts = shuffled_split(101, 7, "owner", 0.15, 0.2)
    joined = torch.cat(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(101))
    assert (len(parts["val"]), len(parts["test"])) == (15, 20)
    assert not torch.equal(parts["test"], shuffled_split(101, 8, "owner", 0.15, 0.2)["test"])


def test_synthetic_table_follows_its_rule():
    task = create_task("synthetic_table", num_examples=300)
    x, c, label = task._table(0)
    expected = (x[:, 0] + x[:, 1] + torch.where(c[:, 0] % 2 == 1, 1.0, -1.0) > 0).long()
    torch.testing.assert_close(label, expected)
    assert 0.3 < float(label.double().mean()) < 0.7


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("digits", {"test_fraction": 0.0}, "test_fraction"),
        ("wine", {"val_fraction": 1.5}, "val_fraction"),
        ("breast_cancer", {"val_fraction": 0.5, "test_fraction": 0.5}, "test_fraction"),
        ("synthetic_table", {"num_categorical": 0}, "num_categorical"),
        ("synthetic_table", {"cardinality": 1}, "cardinality"),
        ("sunspots", {"stride": 0}, "stride"),
        ("elnino", {"test_fraction": -0.1}, "test_fraction"),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(name, options, field):
    with pytest.raises(ConfigError, match=field):
        create_task(name, **options)


# --- series ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERIES)
def test_series_windows_format_and_chronological_split(name):
    pytest.importorskip("statsmodels")
    task = tiny(name)
    io = task.model_io()
    context, horizon = io["context"], io["horizon"]
    assert task.train_seq_len == context and isinstance(task.season_length, int)
    values = task.standardised_series()
    assert values.shape == (task.length, 1) and torch.isfinite(values).all()
    ends = {}
    for split, data in splits(task, 0).items():
        assert data.inputs.shape[1:] == (context, io["num_channels"]) and data.inputs.dtype == torch.float32
        assert data.targets.shape[1:] == (horizon, io["num_channels"])
        assert data.targets.dtype == torch.float32
        origins = task.origins(split)
        assert len(origins) == len(data) > 0
        if split != "train":  # training windows are shuffled; the others are in time order
            for t, x, y in zip(origins.tolist(), data.inputs, data.targets):
                torch.testing.assert_close(x, values[t - context : t])
                torch.testing.assert_close(y, values[t : t + horizon])
        ends[split] = (int(origins.min()), int(origins.max()) + horizon)
    # Targets of a split end before the next split's first target starts.
    assert ends["train"][1] <= ends["val"][0] and ends["val"][1] <= ends["test"][0]
    assert ends["test"][1] <= task.length


@pytest.mark.parametrize("name", SERIES)
def test_series_standardised_with_train_part_and_seeded(name):
    pytest.importorskip("statsmodels")
    task = tiny(name)
    train = task.series_part("train").double()
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std()) - 1) < 1e-5
    a, b = task.train_data(0), task.train_data(1)
    torch.testing.assert_close(a.inputs, task.train_data(0).inputs)
    # The seed orders the training windows; the windows and the held-out parts stay the same.
    assert not torch.equal(a.inputs, b.inputs)
    torch.testing.assert_close(a.inputs.sum(0), b.inputs.sum(0))
    torch.testing.assert_close(task.eval_data(0)[0].targets, task.eval_data(1)[0].targets)


def test_co2_gaps_are_interpolated():
    pytest.importorskip("statsmodels")
    from mixerlab.tasks.series import load_statsmodels_series

    values = load_statsmodels_series("co2")
    assert values.shape == (2284, 1) and torch.isfinite(values).all()
    # Weekly CO2 never jumps by more than a few ppm; a badly filled gap would.
    assert float(values.diff(dim=0).abs().max()) < 5


def test_elnino_is_the_table_read_row_by_row():
    pytest.importorskip("statsmodels")
    from statsmodels.datasets import elnino

    from mixerlab.tasks.series import load_statsmodels_series

    table = elnino.load_pandas().data
    values = load_statsmodels_series("elnino")[:, 0]
    assert values[12] == table["JAN"].iloc[1] and values[23] == table["DEC"].iloc[1]


def test_horizon_too_long_names_horizon_and_its_maximum():
    with pytest.raises(ConfigError, match=r"horizon=47 .*at most 46"):
        create_task("sunspots", context=33, horizon=47)
    create_task("sunspots", context=33, horizon=46)
    with pytest.raises(ConfigError, match=r"context=300 .*at most 215"):
        create_task("sunspots", context=300)


class TwoSines(SeriesTask):
    """A generated two-channel series of period 12, for the window arithmetic with C > 1."""

    owner, length, season_length, num_channels = "two_sines", 240, 12, 2

    def _series(self) -> torch.Tensor:
        t = torch.arange(self.length, dtype=torch.float64)
        return torch.stack([torch.sin(2 * torch.pi * t / 12), 3 + 2 * torch.cos(2 * torch.pi * t / 12)], 1)


def test_multichannel_series_windows():
    task = TwoSines(context=24, horizon=6, stride=5)
    data = task.eval_data(0)[0]
    assert data.inputs.shape[1:] == (24, 2) and data.targets.shape[1:] == (6, 2)
    train = task.series_part("train")
    torch.testing.assert_close(train.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert (task.origins("train")[1:] - task.origins("train")[:-1] == 5).all()
