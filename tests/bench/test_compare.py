"""``compare`` end to end: a tiny sweep into the store and report; killed half-way and re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixerlab.bench.compare import build_sweep, compare, load_sweep, plan
from mixerlab.bench.defaults import DEFAULT_SWEEP, TINY_SWEEP
from mixerlab.bench.store import ResultStore
from mixerlab.errors import ConfigError
from mixerlab.registry import TOKEN_MIXERS


def test_tiny_compare_end_to_end_with_two_workers_then_rerun_skips(tmp_path):
    logs: list[str] = []
    summary = compare(TINY_SWEEP, out_dir=tmp_path, workers=2, log=logs.append)
    assert summary.failed == [] and len(summary.finished) == summary.planned == 4
    rows = ResultStore(tmp_path / "results.sqlite").rows()
    assert len(rows) == 4 and {r["mixer"] for r in rows} == {"attention", "sliding_window"}
    for row in rows:
        assert row["params"] > 0 and row["flops_per_token"] > 0 and row["state_size"] > 0
        assert row["tokens_per_s"] > 0 and row["peak_memory_mb"] > 0
        assert row["versions"]["torch"] and row["device"] == "cpu"
        assert row["config"]["train"]["seed"] == row["seed"] and row["slices"]["num_kv_pairs"]
    assert Path(summary.report["html"]).exists() and len(summary.report["pngs"]) >= 4
    again = compare(TINY_SWEEP, out_dir=tmp_path, workers=2, report=False, log=logs.append)
    assert again.skipped_done == 4 and again.finished == []


def test_sweep_plan_covers_the_grid_and_an_unregistered_mixer_is_an_error():
    sweep = build_sweep(None, tiny=True, lists={"models": "attention,gla", "lrs": "1e-3,3e-3"})
    runs, _ = plan(sweep, lambda message: None)
    assert len(runs) == 2 * 1 * 2 * 2 and len({r.key for r in runs}) == len(runs)
    # A typo must not quietly shrink the comparison.
    sweep = build_sweep(None, tiny=True, lists={"models": "attention,atention"})
    with pytest.raises(ConfigError, match="did you mean 'attention'"):
        plan(sweep, lambda message: None)
    with pytest.raises(ConfigError, match="epochz"):
        build_sweep(None, tiny=True, assignments=["train.epochz=3"])
    # A spec dict in a comma list keeps its own commas.
    sweep = build_sweep(None, tiny=True, lists={"models": 'gla,{"name": "attention", "num_heads": 2}'})
    assert sweep.models == ["gla", {"name": "attention", "num_heads": 2}]


def test_a_model_spec_may_name_its_own_learning_rates_and_lrs_on_the_command_line_replaces_them():
    models = 'attention,{"name": "gla", "lr": 1e-2},{"name": "mingru", "lr": [1e-3, 3e-2]}'
    sweep = build_sweep(None, tiny=True, lists={"models": models}, assignments=["lrs=[3e-3]"])
    runs, _ = plan(sweep, lambda message: None)
    lrs = {(r.label, r.config.train.seed): [] for r in runs}
    for r in runs:
        lrs[(r.label, r.config.train.seed)].append(r.config.train.lr)
        # The key is the sweep's: the mixer is built from the spec without it.
        assert not (isinstance(r.config.model.mixer, dict) and "lr" in r.config.model.mixer)
    assert lrs[("attention", 0)] == [3e-3] and lrs[("gla", 0)] == [1e-2]
    assert lrs[("mingru", 1)] == [1e-3, 3e-2] and len(runs) == 2 * (1 + 1 + 2)
    # --lrs is every model's learning rate.
    sweep = build_sweep(None, tiny=True, lists={"models": models, "lrs": "1e-3"})
    assert {r.config.train.lr for r in plan(sweep, lambda message: None)[0]} == {1e-3}
    with pytest.raises(ConfigError, match=r"models\.gla\.lr"):
        build_sweep(None, tiny=True, lists={"models": '{"name": "gla", "lr": -1}'})


def test_the_default_sweep_has_a_step_budget_and_the_cpu_cap_only_as_a_safety_net():
    from mixerlab.train.trainer import Trainer

    sweep = build_sweep(None)
    assert sweep.train.max_steps is not None and sweep.train.max_cpu_seconds is not None
    trainer = Trainer(plan(sweep, lambda message: None)[0][0].config, progress=False)
    steps_per_epoch, total, epochs = trainer.budget()
    assert total == sweep.train.max_steps < steps_per_epoch * sweep.train.epochs
    # The cap is far above what the slowest default run needs (deltanet at width 64: about 0.15
    # CPU-s a step on one thread).
    assert sweep.train.max_cpu_seconds > 4 * 0.15 * total


def test_default_sweep_uses_registered_mixers_at_two_widths():
    runs, notes = plan(build_sweep(None), lambda _: None)
    mixers = {r.label for r in runs}
    assert len(mixers) >= min(7, len(TOKEN_MIXERS)) and "attention" in mixers
    assert len({r.config.model.dim for r in runs}) == 2
    # One learning rate (lr 1e-2 never trained attention here) and one seed: seven mixers at two
    # widths fit the 15 minutes on 2 cores once (``--seeds 0,1`` adds the spread).
    assert DEFAULT_SWEEP["lrs"] == [3e-3] and len(runs) == len(mixers) * 2 * len(DEFAULT_SWEEP["seeds"])


def _row_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        return len(ResultStore(path).rows())
    except Exception:  # the file may be mid-creation
        return 0


def test_killing_compare_half_way_then_rerunning_loses_and_redoes_nothing(tmp_path):
    sweep = json.loads(json.dumps(TINY_SWEEP))
    sweep["name"] = "kill-test"
    sweep["seeds"] = [0, 1, 2]
    sweep["train"]["epochs"] = 3
    sweep["task"]["options"]["num_train"] = 256
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(sweep))
    out = tmp_path / "runs"
    store = out / "results.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "mixerlab.cli.main",
        "compare",
        "--config",
        str(config),
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-report",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 240
    try:
        while _row_count(store) < 1:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "no run finished in time"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = ResultStore(store).rows()
    assert 1 <= len(before) < 6, "the sweep should have been killed half-way"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(before)} already in" in done.stdout
    after = ResultStore(store).rows()
    assert len(after) == 6 and len({r["run_key"] for r in after}) == 6
    kept = {r["run_key"]: (r["id"], r["created_at"], r["metric"]) for r in after}
    for row in before:  # finished rows are neither lost nor redone
        assert kept[row["run_key"]] == (row["id"], row["created_at"], row["metric"])


TABLE_SWEEP = {
    "name": "table-grid",
    "task": {"name": "synthetic_table", "options": {"num_examples": 160}},
    "models": [{"name": "attention", "num_heads": 2}],
    "grid": {
        "method.name": ["standard", "gradient_noise"],
        "model": [{"name": "tabular"}, {"name": "hist_gradient_boosting", "options": {"max_iter": 10}}],
    },
    "widths": [8],
    "lrs": [3e-3],
    "seeds": [0],
    "model": {"name": "tabular", "depth": 1},
    "train": {"epochs": 1, "batch_size": 32},
}


def test_the_grid_runs_over_non_mixer_fields_with_a_baseline_in_the_same_table(tmp_path):
    runs, _ = plan(_sweep(TABLE_SWEEP), log=lambda m: None)
    # 2 methods x the model, plus one baseline run (methods mean nothing to it).
    assert sorted(r.label for r in runs) == [
        "attention [name=gradient_noise]",
        "attention [name=standard]",
        "hist_gradient_boosting",
    ]
    summary = compare(TABLE_SWEEP, out_dir=tmp_path, workers=1, log=lambda m: None)
    assert summary.failed == [] and len(summary.finished) == 3
    rows = {r["mixer"]: r for r in ResultStore(tmp_path / "results.sqlite").rows()}
    assert rows["attention [name=gradient_noise]"]["axes"]["method.name"] == "gradient_noise"
    assert rows["attention [name=gradient_noise]"]["config"]["method"]["name"] == "gradient_noise"
    baseline = rows["hist_gradient_boosting"]
    assert baseline["kind"] == "classify" and baseline["dim"] is None and baseline["params"] > 0
    assert 0.5 < baseline["metric"] <= 1.0 and baseline["metric_name"] == "accuracy"
    model = rows["attention [name=standard]"]
    assert model["flops_per_example"] > 0 and model["examples_per_s"] > 0 and model["state_size"] == 0
    assert Path(summary.report["html"]).read_text().count("hist_gradient_boosting") >= 1


def _sweep(data):
    from mixerlab.bench.compare import load_sweep

    return load_sweep(data)


def test_a_grid_path_outside_the_run_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="grid"):
        _sweep({**TABLE_SWEEP, "grid": {"optimizer.lr": [1, 2]}})


def test_a_grid_over_tasks_keeps_labels_per_model_and_builds_each_model_for_each_task(monkeypatch):
    from mixerlab.bench.compare import preflight

    sweep = {
        "name": "tables",
        "task": {"name": "breast_cancer"},
        "models": ["gla"],
        "widths": [8],
        "grid": {"task.name": ["breast_cancer", "wine"], "model": [{"name": "tabular"}, {"name": "linear"}]},
        "model": {"name": "tabular", "depth": 1},
    }
    runs, _ = plan(load_sweep(sweep), log=lambda _: None)
    assert sorted((r.config.task.name, r.label) for r in runs) == [
        ("breast_cancer", "gla"),
        ("breast_cancer", "linear"),
        ("wine", "gla"),
        ("wine", "linear"),
    ]
    built = []
    import mixerlab.train.trainer as trainer

    real = trainer.build_model

    def spy(model, task):
        built.append(task.model_io()["num_classes"])
        return real(model, task)

    monkeypatch.setattr(trainer, "build_model", spy)
    kept, notes = preflight(runs, log=lambda _: None)
    assert len(kept) == 4 and not notes
    assert sorted(built) == [2, 3]  # breast_cancer's two classes and wine's three: each task's own model


def test_axis_labels_are_names_with_only_the_options_that_tell_two_values_apart():
    from mixerlab.bench.compare import axis_labels

    methods = [
        {"name": "dfa"},
        {"name": "loop_depth"},
        {"name": "loop_depth", "options": {"p_loop": 0.5, "p_skip": 0.25}},
        {"name": "distill", "options": {"teacher": {"model": {"dim": 96}}, "alpha": 0.5}},
    ]
    assert axis_labels(methods) == {
        0: "dfa",
        1: "loop_depth",
        2: "loop_depth(p_loop=0.5,p_skip=0.25)",
        3: "distill",  # its long teacher spec is not needed to tell it apart
    }
    chains = [
        [{"name": "quantize", "options": {"bits": 4}}],
        [{"name": "quantize", "options": {"bits": 8}}],
        [{"name": "quantize", "options": {"bits": 4}, "when": "before"}, {"name": "cast"}],
        [{"name": "cast"}],
    ]
    assert axis_labels(chains) == {
        0: "quantize(bits=4)",
        1: "quantize(bits=8)",
        2: "quantize+cast",
        3: "cast",
    }
    assert axis_labels([16, 32]) == {0: "16", 1: "32"}


def test_model_auto_takes_each_tasks_own_model_so_one_sweep_spans_kinds():
    sweep = {
        "task": {"name": "digits"},
        "models": ["gla"],
        "widths": [8],
        "grid": {"task": [{"name": "digits"}, {"name": "mqar"}]},
        "model": {"name": "auto", "depth": 1},
    }
    runs, _ = plan(load_sweep(sweep), log=lambda _: None)
    assert {(r.config.task.name, r.config.model.name) for r in runs} == {
        ("digits", "image_classifier"),
        ("mqar", "lm"),
    }
