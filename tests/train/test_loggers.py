"""Experiment trackers: a tiny run logged to TensorBoard and to MLflow, read back with their own readers."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

import pytest

from mixerlab.bench.compare import compare, run_one
from mixerlab.bench.defaults import TINY_SWEEP
from mixerlab.errors import ConfigError
from mixerlab.train.config import RunConfig, from_dict
from mixerlab.train.interrupts import Interrupted
from mixerlab.train.loggers import run_name
from mixerlab.train.schedules import warmup_cosine
from mixerlab.train.trainer import Trainer

# 64 examples in batches of 32 for 2 epochs: 4 optimiser steps (logged at 1..4), an evaluation
# after steps 2 and 4.
RUN = {
    "task": {
        "name": "mqar",
        "options": {"vocab_size": 16, "seq_len": 16, "num_kv_pairs": [2], "num_train": 64, "num_test": 16},
    },
    "model": {"name": "lm", "dim": 16, "depth": 1, "mixer": {"name": "attention", "num_heads": 2}},
    "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3, "warmup_frac": 0.25},
}


def _run_with(loggers: list, tmp_path: Path) -> tuple[dict, RunConfig]:
    config = copy.deepcopy(RUN)
    config["train"]["loggers"] = loggers
    row = run_one(config, "attention", "tiny", None, log_dir=tmp_path)
    return row, from_dict(RunConfig, config)


def _expected_lrs(config: RunConfig, steps: int) -> list[float]:
    warmup = int(config.train.warmup_frac * steps)
    return [config.train.lr * warmup_cosine(s, steps, warmup) for s in range(steps)]


def test_unknown_logger_option_or_missing_package_is_a_config_error_naming_it(monkeypatch):
    with pytest.raises(
        ConfigError, match=r"loggers='wandb'.*registered loggers are \['mlflow', 'tensorboard'\]"
    ):
        from_dict(RunConfig, {"train": {"loggers": ["wandb"]}})
    with pytest.raises(ConfigError, match=r"loggers.tensorboard.dirr='x'.*allowed options are \['dir'\]"):
        from_dict(RunConfig, {"train": {"loggers": [{"name": "tensorboard", "dirr": "x"}]}})
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name)
    )
    with pytest.raises(ConfigError, match=r"needs the 'mlflow' package: pip install 'mixerlab\[track\]'"):
        from_dict(RunConfig, {"train": {"loggers": ["mlflow"]}})


def test_loggers_record_a_run_without_changing_its_key():
    plain, logged = from_dict(RunConfig, RUN), from_dict(RunConfig, RUN)
    logged.train.loggers = ["tensorboard", "mlflow"]
    assert plain.key() == logged.key()


def test_tensorboard_logger_writes_config_step_losses_evaluations_and_costs(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard logger needs the track extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    row, config = _run_with(["tensorboard"], tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard" / "tiny" / run_name(config)))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3, 4]
    # The per-step losses are the ones the epoch records average.
    for epoch, record in enumerate(row["history"]):
        mean = sum(e.value for e in losses[2 * epoch : 2 * epoch + 2]) / 2
        assert mean == pytest.approx(record["loss"], rel=1e-5)
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs == pytest.approx(_expected_lrs(config, 4), rel=1e-6)
    accuracy = events.Scalars("eval/accuracy")
    assert [(e.step, e.value) for e in accuracy] == [
        (r["step"], pytest.approx(r["accuracy"], rel=1e-6)) for r in row["history"]
    ]
    slices = events.Scalars("eval/accuracy_by_num_kv_pairs/2")
    assert slices[-1].value == pytest.approx(row["slices"]["num_kv_pairs"]["2"], rel=1e-6)
    for cost in ("params", "flops_per_token", "state_size"):
        (last,) = events.Scalars(f"cost/{cost}")
        assert last.value == pytest.approx(row[cost], rel=1e-6) and last.step == 4
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.lr"].number_value == pytest.approx(3e-3)
    assert hparams["model.dim"].number_value == 16
    assert json.loads(hparams["task.options.num_kv_pairs"].string_value) == [2]


def test_mlflow_logger_writes_params_metrics_costs_and_the_config_to_a_local_file_store(tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow logger needs the track extra")
    from mlflow.tracking import MlflowClient

    row, config = _run_with(["mlflow"], tmp_path)
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_name(config) and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.003" and run.data.params["model.dim"] == "16"
    assert run.data.params["task.options.num_kv_pairs"] == "[2]"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    by_step = {m.step: m.value for m in history}
    assert sorted(by_step) == [1, 2, 3, 4]
    for epoch, record in enumerate(row["history"]):
        assert (by_step[2 * epoch + 1] + by_step[2 * epoch + 2]) / 2 == pytest.approx(
            record["loss"], rel=1e-6
        )
    lrs = [
        m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/lr"), key=lambda m: m.step)
    ]
    assert lrs == pytest.approx(_expected_lrs(config, 4), rel=1e-9)
    accuracy = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert sorted((m.step, m.value) for m in accuracy) == [(r["step"], r["accuracy"]) for r in row["history"]]
    assert run.data.metrics["cost/params"] == row["params"]
    assert run.data.metrics["cost/state_size"] == row["state_size"]
    assert math.isclose(run.data.metrics["final/accuracy"], row["metric"])
    saved = json.loads(
        Path(client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))).read_text()
    )
    assert saved["model"]["mixer"] == {"name": "attention", "num_heads": 2}


def test_a_sweep_logs_each_run_and_the_report_plots_to_both_loggers(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard logger needs the track extra")
    pytest.importorskip("mlflow", reason="the mlflow logger needs the track extra")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = copy.deepcopy(TINY_SWEEP)
    sweep.update(models=[{"name": "attention", "num_heads": 2}], seeds=[0])
    sweep["train"] = {
        **sweep["train"],
        "loggers": ["tensorboard", {"name": "mlflow", "experiment": "tiny-mlflow"}],
    }
    summary = compare(sweep, out_dir=tmp_path, workers=1, log=lambda message: None)
    assert len(summary.finished) == 1 and summary.report["pngs"]
    report = EventAccumulator(str(tmp_path / "tensorboard" / "mqar-tiny" / "report"))
    report.Reload()
    assert set(report.Tags()["images"]) == set(summary.report["pngs"])
    (image,) = report.Images(next(iter(summary.report["pngs"])))
    assert image.encoded_image_string == Path(next(iter(summary.report["pngs"].values()))).read_bytes()
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny-mlflow")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert len(runs) == 2 and "report" in runs
    artifacts = {Path(a.path).name for a in client.list_artifacts(runs["report"].info.run_id, "report")}
    assert artifacts == {Path(p).name for p in summary.report["pngs"].values()}


def test_a_resumed_run_logs_each_step_once_in_both_loggers(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard logger needs the track extra")
    pytest.importorskip("mlflow", reason="the mlflow logger needs the track extra")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = from_dict(RunConfig, {**RUN, "train": {**RUN["train"], "loggers": ["tensorboard", "mlflow"]}})
    checkpoint = tmp_path / "run.pt"
    polls = []

    def stop_before_the_fourth_step() -> bool:
        polls.append(1)
        return len(polls) > 3

    # Stopped after step 2 (epoch 2 half done): the checkpoint is from the end of epoch 1.
    first = Trainer(config, checkpoint_path=checkpoint, progress=False, log_dir=tmp_path, log_group="resume")
    first.should_stop = stop_before_the_fourth_step
    with pytest.raises(Interrupted):
        first.fit()
    first.close("interrupted")
    second = Trainer(config, checkpoint_path=checkpoint, progress=False, log_dir=tmp_path, log_group="resume")
    result = second.fit()
    second.close(result.status)
    assert result.steps == 4 and len(polls) == 4

    events = EventAccumulator(str(tmp_path / "tensorboard" / "resume" / run_name(config)))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("eval/accuracy")] == [2, 4]
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert steps == [1, 2, 3, 4]
    accuracy = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/accuracy"))
    assert [step for step, _ in accuracy] == [2, 4] and accuracy[-1][1] == result.metrics.value
