"""Results store (one row per run, keyed, never duplicated) and cost measurements."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.bench.costs import count_parameters, flops_per_token, measure_costs, training_memory_bytes
from mixerlab.bench.store import ResultStore, database_url


def test_store_writes_reads_and_refuses_duplicates(tmp_path):
    store = ResultStore(tmp_path / "sub" / "results.sqlite")
    row = {
        "run_key": "abc",
        "sweep": "s",
        "task": "mqar",
        "mixer": "attention",
        "metric": 0.5,
        "config": {"train": {"lr": 1e-3}},
        "slices": {"num_kv_pairs": {"4": 1.0}},
    }
    assert store.write(row) is True
    assert store.write({**row, "metric": 0.9}) is False
    rows = store.rows()
    assert len(rows) == 1 and rows[0]["metric"] == 0.5 and rows[0]["config"]["train"]["lr"] == 1e-3
    assert rows[0]["slices"] == {"num_kv_pairs": {"4": 1.0}} and rows[0]["created_at"] is not None
    assert store.finished_keys() == {"abc"}
    assert store.rows(sweep="other") == []
    with pytest.raises(ValueError, match="unknown result columns"):
        store.write({"run_key": "x", "colour": "red"})
    store.close()
    # A second connection sees the same data (it is a file next to the run).
    assert ResultStore(tmp_path / "sub" / "results.sqlite").finished_keys() == {"abc"}


def test_database_url_passes_urls_and_turns_paths_into_sqlite(tmp_path):
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert database_url(tmp_path / "r.sqlite").startswith("sqlite:///")


def lm(dim, mixer="attention"):
    return mixerlab.create_model("lm", vocab_size=32, dim=dim, depth=2, mixer=mixer)


def test_costs_scale_with_width_and_state_size_follows_the_mixer():
    small, large = lm(16), lm(32)
    assert count_parameters(large) > count_parameters(small)
    f_small, f_large = flops_per_token(small, 16), flops_per_token(large, 16)
    assert f_small > 0 and 2.5 < f_large / f_small < 5  # matmul FLOPs grow ~ dim^2 (embeddings less)
    task = mixerlab.create_task("mqar", vocab_size=32, seq_len=16, test_seq_lens=[64], num_kv_pairs=[2])
    tokens = task.train_data(0).inputs[:4]
    costs = measure_costs(small, task=task, inputs=tokens, device="cpu")
    assert costs["state_size"] == small.state_size(16)
    assert costs["state_size_eval"] == 4 * costs["state_size"]  # attention's cache grows with T
    assert costs["flops_per_example"] == pytest.approx(16 * costs["flops_per_token"])
    window = lm(16, {"name": "sliding_window", "window": 4})
    assert window.state_size(64) == window.state_size(16)


def test_training_memory_counts_activations_that_grow_with_batch():
    model = lm(16)
    one = training_memory_bytes(model, torch.zeros(1, 16, dtype=torch.long))
    eight = training_memory_bytes(model, torch.zeros(8, 16, dtype=torch.long))
    weights = 4 * sum(p.numel() * 4 for p in model.parameters())
    assert weights < one < eight


def test_costs_of_an_image_model_use_images_and_count_patches():
    task = mixerlab.create_task("digits")
    images = task.train_data(0).inputs[:4]
    assert images.dtype == torch.float32 and images.dim() == 4
    model = mixerlab.create_model("image_classifier", **task.model_io(), dim=16, depth=1, mixing="causal")
    costs = measure_costs(model, task=task, inputs=images, device="cpu")
    tokens = model.stem.num_tokens()  # 16 patches of 2x2 and the class token
    assert tokens == 17 and costs["flops_per_example"] == pytest.approx(tokens * costs["flops_per_token"])
    assert costs["state_size"] == model.state_size(tokens) and costs["peak_memory_mb"] > 0


OLD_SCHEMA = """CREATE TABLE runs (id INTEGER PRIMARY KEY, run_key VARCHAR(64) NOT NULL UNIQUE,
sweep VARCHAR(200), task VARCHAR(100), model VARCHAR(200), mixer VARCHAR(200), dim INTEGER, lr FLOAT,
seed INTEGER,
status VARCHAR(32), metric_name VARCHAR(64), metric FLOAT, higher_is_better BOOLEAN, params BIGINT,
flops_per_token FLOAT, state_size BIGINT, state_size_eval BIGINT, tokens_per_s FLOAT, peak_memory_mb FLOAT,
train_seconds FLOAT, train_cpu_seconds FLOAT, steps INTEGER, epochs INTEGER, device VARCHAR(100),
message TEXT, created_at DATETIME, config JSON, slices JSON, history JSON, versions JSON)"""


def test_a_store_written_before_axes_migrates_without_losing_a_row(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the schema of stores written before the grid had axes
        conn.execute(OLD_SCHEMA)
        for i, mixer in enumerate(["attention", "gla"]):
            conn.execute(
                "INSERT INTO runs (run_key, sweep, task, mixer, dim, lr, seed, metric) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (f"k{i}", "old", "mqar", mixer, 32, 3e-3, i, 0.5 + i / 10),
            )
    store = ResultStore(path)
    rows = store.rows()
    assert [r["run_key"] for r in rows] == ["k0", "k1"] and rows[1]["metric"] == pytest.approx(0.6)
    assert rows[1]["axes"] == {"model.mixer": "gla", "model.dim": 32, "train.lr": 3e-3, "train.seed": 1}
    assert rows[0]["kind"] == "next_token"
    assert store.write(
        {"run_key": "new", "task": "digits", "kind": "classify", "axes": {"model.mixing": "2d"}}
    )
    assert store.rows()[-1]["axes"] == {"model.mixing": "2d"} and len(store.rows()) == 3
    store.close()
