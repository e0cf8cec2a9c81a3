"""The command line: every command has --help; list, train, compare --tiny and report run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import mixerlab.cli.compare
import mixerlab.cli.list
import mixerlab.cli.report
import mixerlab.cli.train  # noqa: F401  (each module adds its command)
from mixerlab.bench.store import ResultStore
from mixerlab.cli.app import app
from mixerlab.registry import (
    BASELINES,
    CHANNEL_MIXERS,
    HEADS,
    METHODS,
    NORMS,
    OBJECTIVES,
    STEMS,
    TASKS,
    TOKEN_MIXERS,
    TRANSFORMS,
)

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "compare", "report", "list"])
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_list_shows_every_registered_entry_and_markdown_table():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in TOKEN_MIXERS.list() + TASKS.list():
        assert name in result.output
    table = runner.invoke(app, ["list", "--markdown"]).output
    assert "| name | paper | arXiv | state size | time | memory | modes | mixing |" in table
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    others = (STEMS, HEADS, OBJECTIVES, METHODS, TRANSFORMS, BASELINES)
    assert len(rows) == len(TOKEN_MIXERS) + len(CHANNEL_MIXERS) + len(NORMS) + sum(map(len, others))
    assert runner.invoke(app, ["list", "tasks"]).exit_code == 0
    assert runner.invoke(app, ["list", "nonsense"]).exit_code != 0


def test_train_prints_progress_and_final_metrics(tmp_path):
    out = tmp_path / "result.json"
    args = [
        "train",
        "--task",
        "parity",
        "--mixer",
        '{"name": "attention", "num_heads": 2}',
        "--dim",
        "16",
        "--depth",
        "1",
        "--epochs",
        "2",
        "--no-progress",
        "--output",
        str(out),
        "--store",
        str(tmp_path / "runs" / "results.sqlite"),
        "--set",
        "task.options={seq_len: 8, test_seq_lens: [8, 16], num_train: 64, num_test: 16}",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output
    saved = json.loads(out.read_text())
    assert saved["metrics"]["name"] == "accuracy" and set(saved["metrics"]["slices"]["seq_len"]) == {
        "8",
        "16",
    }
    # The run is in the store, as a row like a sweep's (sweep "train"), and the report shows it.
    store = tmp_path / "runs" / "results.sqlite"
    (row,) = ResultStore(store).rows()
    assert row["sweep"] == "train" and row["run_key"] == saved["run_key"] and row["params"] > 0
    assert row["metric"] == saved["metrics"]["value"] and row["axes"]["model.dim"] == 16
    assert not list((tmp_path / "runs" / "checkpoints").glob("*.pt"))  # removed once stored
    for header in ("metric ± std", "params", "state", "throughput", "ended by"):
        assert header in result.output
    shown = runner.invoke(app, ["report", "--store", str(store), "--sweep", "train"])
    assert shown.exit_code == 0, shown.output
    assert "attention" in shown.output and "http.server" in shown.output
    assert (tmp_path / "runs" / "report" / "report.html").exists()
    # The same run again is found in the store, not trained again.
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already in" in again.output and "epoch 1/" not in again.output
    assert len(ResultStore(store).rows()) == 1


def test_bare_train_is_the_first_run_of_the_default_compare():
    from mixerlab.bench.compare import build_sweep, plan
    from mixerlab.train.run import build_run_config

    runs, _ = plan(build_sweep(None), log=lambda message: None)
    first = min(runs, key=lambda r: (r.config.train.seed, r.config.train.lr, r.config.model.dim))
    assert build_run_config(None).key() in {r.key for r in runs}
    assert build_run_config(None).task == first.config.task


def test_train_rejects_unknown_config_keys():
    result = runner.invoke(app, ["train", "--set", "train.epochz=2"])
    assert result.exit_code == 2 and "epochz" in result.output


def test_compare_tiny_then_report(tmp_path):
    result = runner.invoke(
        app,
        [
            "compare",
            "--tiny",
            "--out",
            str(tmp_path),
            "--workers",
            "1",
            "--set",
            "seeds=[0]",
            "--set",
            "train.epochs=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "report.html").exists()
    again = runner.invoke(
        app, ["report", "--store", str(tmp_path / "results.sqlite"), "--out", str(tmp_path / "r2")]
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "r2" / "report.html").exists() and (tmp_path / "r2" / "metric_vs_width.png").exists()


def test_results_table_keeps_bracketed_run_labels(capsys):
    from mixerlab.cli._table import print_table

    print_table("t", ["model", "metric"], [["attention [model=patchtst]", "0.5"]])
    assert "attention [model=patchtst]" in capsys.readouterr().out  # not eaten as rich markup
