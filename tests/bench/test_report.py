"""The report: leaderboard maths, a self-contained HTML page and PNGs, checked in a real browser."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from mixerlab.bench.browser_check import check_report, find_chromium
from mixerlab.bench.report import leaderboard, load_rows, write_report
from mixerlab.bench.store import ResultStore


def fake_rows():
    rows = []
    for mixer, dim, lr, seed, metric in [
        ("attention", 32, 1e-3, 0, 0.9),
        ("attention", 32, 1e-3, 1, 0.7),
        ("attention", 32, 1e-2, 0, 0.95),
        ("attention", 32, 1e-2, 1, 0.97),
        ("attention", 64, 1e-3, 0, 1.0),
        ("gla", 32, 1e-3, 0, 0.5),
        ("gla", 64, 1e-3, 0, None),
    ]:
        rows.append(
            {
                "run_key": f"{mixer}-{dim}-{lr}-{seed}",
                "sweep": "s",
                "task": "mqar",
                "model": "lm",
                "mixer": mixer,
                "dim": dim,
                "lr": lr,
                "seed": seed,
                "status": "finished" if metric is not None else "diverged",
                "metric_name": "accuracy",
                "metric": metric,
                "higher_is_better": True,
                "params": 1000 * dim,
                "flops_per_token": 1e4 * dim,
                "state_size": 10 * dim if mixer == "gla" else 64 * dim,
                "state_size_eval": 10 * dim if mixer == "gla" else 128 * dim,
                "tokens_per_s": 1e4,
                "peak_memory_mb": 1.0,
                "train_seconds": 1.0,
                "steps": 10,
                "epochs": 1,
                "device": "cpu",
                "config": {"task_options": {"vocab_size": 32}},
                "slices": None if metric is None else {"num_kv_pairs": {"2": 1.0, "4": metric}},
                "history": [],
                "versions": {"torch": "x"},
            }
        )
    return rows


def test_leaderboard_takes_the_best_lr_by_mean_over_seeds():
    entries = leaderboard(fake_rows())
    att32 = next(e for e in entries if e.mixer == "attention" and e.dim == 32)
    assert (
        att32.lr == 1e-2
        and att32.mean == pytest.approx(0.96)
        and att32.std == pytest.approx(0.01414, rel=1e-3)
    )
    assert entries[0].mixer == "attention" and entries[0].dim == 64
    assert entries[-1].mixer == "gla" and entries[-1].dim == 64  # a run without a metric ranks last


@pytest.fixture
def report(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    for row in fake_rows():
        store.write(row)
    store.close()
    return write_report(tmp_path / "results.sqlite", tmp_path / "report", log=lambda _: None)


def test_report_is_self_contained_html_with_every_plot_and_mixer(report):
    page = Path(report["html"]).read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(report["pngs"]) >= 4
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page  # nothing to fetch: opens offline
    assert {"metric_vs_state_size", "metric_vs_width", "metric_per_num_kv_pairs", "seed_spread"} <= set(
        report["pngs"]
    )
    for mixer in ("attention", "gla"):
        assert f"<td>{mixer}</td>" in page


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary found (apt-get install -y chromium)")
def test_report_renders_in_a_headless_browser_and_its_images_load(report):
    result = check_report(report["html"])
    assert result["images"] == len(report["pngs"]) and result["loaded"] == result["images"]
    assert result["rows"] == 4  # attention and gla at two widths


def test_terminal_table_has_one_row_per_entry_with_what_ended_the_runs():
    from mixerlab.bench.report import terminal_table

    entries = leaderboard(fake_rows())
    columns, rows = terminal_table(entries)
    assert len(rows) == len(entries) and all(len(r) == len(columns) for r in rows)
    by_model = {(r[0], r[1]): dict(zip(columns, r)) for r in rows}
    assert by_model[("attention", "32")]["metric ± std"] == "0.96 ± 0.014"
    assert by_model[("attention", "32")]["ended by"] == "schedule"
    assert by_model[("gla", "64")]["ended by"] == "diverged" and by_model[("gla", "64")]["params"] == "64,000"


def test_a_postgresql_store_gives_the_same_rows_leaderboard_and_report_as_sqlite(postgres_url, tmp_path):
    rows = fake_rows()
    rows[-1]["history"] = [{"loss": float("nan")}]  # the diverged run, as the trainer records it
    loaded = {}
    for name, url in (("sqlite", str(tmp_path / "results.sqlite")), ("postgresql", postgres_url)):
        store = ResultStore(url)
        for row in rows:
            store.write(row)
        store.close()
        loaded[name] = load_rows(url, sweep="s")
        report = write_report(url, tmp_path / name, sweep="s", log=lambda _: None)
        page = Path(report["html"]).read_text(encoding="utf-8")
        assert "<td>gla</td>" in page and len(report["pngs"]) >= 4
    for row in loaded["sqlite"] + loaded["postgresql"]:  # written at different moments
        del row["created_at"]
    assert repr(loaded["postgresql"]) == repr(loaded["sqlite"])  # repr: NaN == NaN
    assert repr(leaderboard(loaded["postgresql"])) == repr(leaderboard(loaded["sqlite"]))
