"""benchmarks/gpu.py at tiny sizes on the CPU: the parts of the GPU benchmark a CPU can run
(building every kind of row, the peer pairing and ratio, the budget cut, the Markdown section)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("mixerlab_benchmark_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_measures_mixers_peers_and_the_backend_rows():
    gpu = _load()
    # No per-step bound, so no row falls back to the short length however loaded the machine is.
    sizes = dataclasses.replace(gpu.TINY, max_step_s=float("inf"))
    result = gpu.run(torch.device("cpu"), sizes, budget_s=600.0, only=["attention", "mamba", "lstm"])
    rows = {r["name"]: r for r in result["rows"]}
    # mamba has a backend option, and its loop-free mode is timed beside it
    assert set(rows) == {"attention", "mamba", "mamba [torch]", "mamba [parallel]", "lstm"}
    assert all(r["tok_s"] > 0 and r["seq_len"] == gpu.TINY.seq_len for r in rows.values())
    sdpa = next(p for p in result["peers"] if p["mixer"] == "attention")
    assert sdpa["tok_s"] > 0
    assert result["matmul_tflops"] > 0
    text = gpu.markdown(result, torch.device("cpu"), sizes, "python benchmarks/gpu.py --tiny")
    ratio = rows["attention"]["tok_s"] / sdpa["tok_s"]
    assert f"| attention | {rows['attention']['tok_s']:,.0f} | - | {sdpa['name']} |" in text
    assert f"{ratio:.2f}x |" in text
    assert "B=2, T=64, dim=32, 2 heads" in text


def test_spent_budget_lists_the_rest_as_not_measured():
    gpu = _load()
    result = gpu.run(torch.device("cpu"), gpu.TINY, budget_s=0.0, only=["mingru"])
    assert result["rows"] == [{"name": "mingru", "error": "not measured: time budget spent"}]
    assert "| mingru | not measured: time budget spent |" in gpu.markdown(
        result, torch.device("cpu"), gpu.TINY, "cmd"
    )


def test_a_layer_over_the_step_bound_is_measured_at_the_short_length():
    gpu = _load()
    sizes = dataclasses.replace(gpu.TINY, max_step_s=0.0)  # every probe is over the bound
    result = gpu.run(torch.device("cpu"), sizes, budget_s=600.0, only=["lstm"])
    (row,) = result["rows"]
    assert row["seq_len"] == sizes.short_len and row["tok_s"] > 0
    assert f"(at T={sizes.short_len})" in gpu.markdown(result, torch.device("cpu"), sizes, "cmd")
