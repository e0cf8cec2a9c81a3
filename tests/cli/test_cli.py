"""The command line: every command has --help; list, train, compare --tiny and report run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import mixerlab.cli.compare
import mixerlab.cli.list
import mixerlab.cli.report
import mixerlab.cli.train  # noqa: F401  (each module adds its command)
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
