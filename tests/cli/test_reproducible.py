"""The same command with the same seed gives the same metric, to the last digit (on one machine).

Budgets are steps, not seconds, so a run does not depend on how busy the machine is.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

import mixerlab.cli.compare
import mixerlab.cli.train  # noqa: F401  (each module adds its command)
from mixerlab.bench.store import ResultStore
from mixerlab.cli.app import app

runner = CliRunner()


def test_training_the_same_config_twice_gives_the_same_metrics(tmp_path):
    results = []
    for i in range(2):
        out = tmp_path / f"result{i}.json"
        args = [
            "train", "--no-store", "--no-progress", "--output", str(out),
            "--mixer", '{"name": "attention", "num_heads": 2}', "--dim", "16", "--depth", "1",
            "--max-steps", "30", "--seed", "3",
            "--set", "task.options={vocab_size: 16, seq_len: 16, num_kv_pairs: [2, 4], num_train: 256}",
        ]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        results.append(json.loads(out.read_text()))
    a, b = results
    assert a["steps"] == b["steps"] == 30 and a["status"] == "finished"
    assert a["metrics"] == b["metrics"]  # value and every slice, exactly


def test_a_tiny_compare_twice_into_two_stores_gives_identical_metrics(tmp_path):
    metrics = []
    for i in range(2):
        out = tmp_path / f"runs{i}"
        args = [
            "compare",
            "--tiny",
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-report",
            "--set",
            "train.max_steps=12",
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = ResultStore(out / "results.sqlite").rows()
        metrics.append({r["run_key"]: (r["metric"], r["slices"], r["steps"]) for r in rows})
    assert len(metrics[0]) == 4 and metrics[0] == metrics[1]
