"""The report's cost plots and per-task sections: which figures a set of runs gets, and from what."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mixerlab.bench.report import leaderboard, write_report
from mixerlab.bench.report_plots import _frontier, figures_for
from mixerlab.bench.store import ResultStore


def row(mixer, metric, *, task="digits", seed=0, dim=32, flops=None, history=None, metric_name="accuracy"):
    return {
        "run_key": f"{task}-{mixer}-{dim}-{seed}",
        "sweep": "s",
        "task": task,
        "kind": "classify",
        "model": "image_classifier",
        "mixer": mixer,
        "dim": dim,
        "lr": 1e-3,
        "seed": seed,
        "status": "finished",
        "metric_name": metric_name,
        "metric": metric,
        "higher_is_better": True,
        "params": 100,
        "flops_per_token": None,
        "flops_per_example": flops,
        "examples_per_s": 10.0,
        "state_size": 0,
        "state_size_eval": 0,
        "tokens_per_s": None,
        "peak_memory_mb": 1.0,
        "train_seconds": 1.0,
        "steps": 10,
        "epochs": 1,
        "device": "cpu",
        "config": {"task_options": {}},
        "slices": None,
        "history": history or [],
        "versions": {"torch": "x"},
    }


def figure_names(rows):
    import matplotlib

    matplotlib.use("Agg")
    figures = figures_for(rows, leaderboard(rows))
    import matplotlib.pyplot as plt

    for _, fig in figures.values():
        plt.close(fig)
    return set(figures)


def test_fit_time_plot_appears_when_a_baseline_of_another_field_is_in_the_table():
    neural = [row("attention", 0.9), row("gla", 0.8)]
    for r, seconds in zip(neural, (3.0, 5.0)):
        r["train_cpu_seconds"] = seconds
    baseline = row("hist_gradient_boosting", 0.95, dim=0)
    baseline["train_cpu_seconds"] = 0.2
    assert "metric_vs_fit_time" in figure_names([*neural, baseline])
    assert "metric_vs_fit_time" not in figure_names(neural)


def test_flops_plot_needs_two_models_with_measured_flops():
    two = [row("attention", 0.9, flops=2e6), row("gnconv", 0.8, flops=5e5)]
    assert "metric_vs_flops" in figure_names(two)
    one = [row("attention", 0.9, flops=2e6), row("hist_gradient_boosting", 0.95, dim=0)]
    assert "metric_vs_flops" not in figure_names(one)


def transforms(bytes_, tokens_per_s=None):
    facts = [{"name": "Quantize", "bytes": bytes_ * 3}, {"name": "Cast", "bytes": bytes_}]
    if tokens_per_s is not None:
        facts[-1]["infer_tokens_per_s"] = tokens_per_s
    return [{"transforms": facts}]


def test_frontier_plots_read_the_last_transform_that_reports_bytes():
    rows = [
        row("attention [transforms=cast]", 0.97, history=transforms(1000, 50.0)),
        row("attention [transforms=quantize]", 0.96, history=transforms(250, 80.0)),
    ]
    entries = leaderboard(rows)
    by_label = {e.mixer: e for e in entries}
    assert by_label["attention [transforms=cast]"].fact("bytes") == 1000  # the last one, not 3000
    assert by_label["attention [transforms=quantize]"].fact("infer_tokens_per_s") == 80.0
    assert {"frontier_bytes", "frontier_speed"} <= figure_names(rows)
    assert not {"frontier_bytes", "frontier_speed"} & figure_names([row("attention", 0.9), row("gla", 0.8)])


def test_variant_points_average_each_variant_over_seeds():
    def variants(a, b):
        return [
            {
                "variants": {
                    "exit1": {"accuracy": a, "compute_fraction": 0.5},
                    "dim6": {"accuracy": b, "embedding_fraction": 0.25},
                }
            }
        ]

    rows = [
        row("attention [method=early_exit]", 0.9, seed=0, history=variants(0.6, 0.4)),
        row("attention [method=early_exit]", 0.9, seed=1, history=variants(0.8, 0.2)),
        row("attention [method=standard]", 0.9),
    ]
    entries = {e.mixer: e for e in leaderboard(rows)}
    points = sorted(entries["attention [method=early_exit]"].variant_points())
    assert points == [pytest.approx((0.25, 0.3)), pytest.approx((0.5, 0.7))]
    assert entries["attention [method=standard]"].variant_points() == []
    assert "variants" in figure_names(rows)
    assert "variants" not in figure_names(rows[2:])


def test_frontier_keeps_only_points_no_other_point_beats_on_both_axes():
    entries = leaderboard(
        [
            row("a", 0.5, flops=1.0),
            row("b", 0.9, flops=4.0),
            row("c", 0.7, flops=8.0),
            row("d", 0.95, flops=9.0),
        ]
    )

    class Axis:
        def step(self, xs, ys, **_):
            self.points = list(zip(xs, ys))

    ax = Axis()
    _frontier(ax, entries, lambda e: e.cost("flops_per_example"))
    assert ax.points == [(1.0, 0.5), (4.0, 0.9), (9.0, 0.95)]  # c is cheaper than d but worse than b


def test_a_sweep_over_tasks_gets_a_section_and_plots_per_task(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    for r in [
        row("attention", 0.9, task="wine", flops=1e5),
        row("gla", 0.7, task="wine", flops=2e5),
        row("attention", 0.95, task="breast_cancer"),
        row("linear", 0.97, task="breast_cancer", dim=0),
    ]:
        store.write(r)
    store.close()
    report = write_report(tmp_path / "results.sqlite", tmp_path / "report", log=lambda _: None)
    assert report["tasks"] == ["wine", "breast_cancer"]
    assert "wine-metric_vs_flops" in report["pngs"] and "breast_cancer-metric_vs_flops" not in report["pngs"]
    assert all(Path(p).exists() for p in report["pngs"].values())
    page = Path(report["html"]).read_text(encoding="utf-8")
    sections = re.split(r'<h2 id="', page)[1:]
    assert [s.split('"')[0] for s in sections] == ["wine", "breast_cancer"]
    assert "<td>gla</td>" in sections[0] and "<td>gla</td>" not in sections[1]  # never ranked together
    assert "<td>linear</td>" in sections[1]
