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
    costs = measure_costs(small, train_seq_len=16, eval_seq_len=64, batch_size=4, device="cpu")
    assert costs["state_size"] == small.state_size(16)
    assert costs["state_size_eval"] == 4 * costs["state_size"]  # attention's cache grows with T
    window = lm(16, {"name": "sliding_window", "window": 4})
    assert window.state_size(64) == window.state_size(16)


def test_training_memory_counts_activations_that_grow_with_batch():
    model = lm(16)
    one = training_memory_bytes(model, torch.zeros(1, 16, dtype=torch.long))
    eight = training_memory_bytes(model, torch.zeros(8, 16, dtype=torch.long))
    weights = 4 * sum(p.numel() * 4 for p in model.parameters())
    assert weights < one < eight
