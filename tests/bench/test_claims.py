"""Papers' claims as pass/fail experiments: the registry, one claim end to end, verdicts, the command."""

from __future__ import annotations

import math
import re

import pytest
import torch
from typer.testing import CliRunner

import mixerlab.cli.claims  # noqa: F401  (adds the command)
from mixerlab.bench.claims import (
    CLAIMS,
    Measurement,
    list_claims,
    run_claims,
    select_claims,
    verdict,
)
from mixerlab.bench.store import ResultStore
from mixerlab.cli.app import app
from mixerlab.errors import ConfigError

runner = CliRunner()

# The papers the claims must cover (issue 14): Zoology, Grazzi et al., Based, GLA, minGRU/minLSTM,
# hybrid linear attention, sliding windows, DyT, KAN, NALU, Switch, DeltaNet.
EXPECTED_ARXIV = {
    "2312.04927",
    "2411.12537",
    "2402.18668",
    "2312.06635",
    "2410.01201",
    "2507.06457",
    "2004.05150",
    "2503.10622",
    "2404.19756",
    "1808.00508",
    "2101.03961",
    "2406.06484",
}


def test_registry_has_the_twelve_claims_with_paper_arxiv_and_threshold():
    assert len(CLAIMS) >= 12
    assert {c.arxiv for c in CLAIMS.values()} >= EXPECTED_ARXIV
    for claim in CLAIMS.values():
        assert claim.paper and claim.text and claim.thresholds
        assert re.fullmatch(r"\d{4}\.\d{4,5}", claim.arxiv), claim.arxiv
        for threshold in claim.thresholds:
            assert math.isfinite(threshold.value)


def test_quick_is_a_strict_nonempty_subset():
    quick = {c.name for c in list_claims(quick=True)}
    everything = {c.name for c in list_claims()}
    assert quick and quick < everything


def test_pass_fail_follows_the_threshold():
    claim = CLAIMS["negative_eigenvalues_parity"]
    good = {
        "negative_train_len_accuracy": 1.0,
        "negative_longest_accuracy": 0.95,
        "positive_train_len_accuracy": 0.5,
    }
    assert verdict(claim, [Measurement(good)], [0]).passed
    # One condition missed fails the claim and names that condition.
    bad = verdict(claim, [Measurement({**good, "positive_train_len_accuracy": 0.8})], [0])
    assert not bad.passed and "positive_train_len_accuracy <= 0.75" in bad.message
    # Figures are averaged over seeds before the threshold is applied: mean 0.94 < 0.95.
    seeds = [Measurement({**good, "negative_train_len_accuracy": v}) for v in (1.0, 0.88)]
    assert not verdict(claim, seeds, [0, 1]).passed
    # A missing or non-finite figure never passes.
    assert not verdict(claim, [Measurement({**good, "negative_longest_accuracy": math.nan})], [0]).passed
    assert not verdict(claim, [], [0]).passed


def test_one_tiny_claim_end_to_end_into_store_and_report(tmp_path):
    store = tmp_path / "results.sqlite"
    results = run_claims(
        select_claims(["negative_eigenvalues_parity"]), scale=0.05, out=tmp_path / "claims", store=str(store)
    )
    (result,) = results
    assert result.status in ("passed", "failed") and not result.error
    rows = ResultStore(store, create=False).rows(sweep="claims")
    assert len(rows) == 1
    row = rows[0]
    assert row["task"] == "negative_eigenvalues_parity" and row["status"] == result.status
    assert row["config"]["arxiv"] == "2411.12537" and row["config"]["thresholds"]
    assert row["message"] == result.message and row["slices"]["figures"]
    assert (tmp_path / "claims" / "negative_eigenvalues_parity.png").stat().st_size > 0
    page = (tmp_path / "claims" / "report.html").read_text()
    assert "negative_eigenvalues_parity" in page and "data:image/png;base64" in page


def test_claims_in_two_worker_processes_measure_what_one_process_does_in_the_same_order(tmp_path):
    chosen = select_claims(["negative_eigenvalues_parity", "kan_parameter_efficiency"])
    # A broken experiment in a worker fails its claim with the error; the others still run.
    broken = {"kan_parameter_efficiency": {"kan_hidden": None}}
    one = run_claims(chosen, scale=0.05)
    two = run_claims(chosen, scale=0.05, workers=2, out=tmp_path / "claims", settings=broken)
    assert [r.claim.name for r in two] == [c.name for c in chosen]
    assert two[0].figures == one[0].figures and not two[0].error
    assert two[1].status == "failed" and two[1].error
    assert (tmp_path / "claims" / "report.html").exists()
    with pytest.raises(ConfigError, match="workers"):
        run_claims(chosen, workers=0)


def test_unknown_claim_is_a_config_error():
    with pytest.raises(ConfigError, match="known claims"):
        select_claims(["no_such_claim"])


def test_cli_only_with_unknown_name_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["claims", "--only", "no_such_claim", "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no_such_claim" in lines[0] and "Traceback" not in result.output


def test_cli_list_and_help():
    assert runner.invoke(app, ["claims", "--help"]).exit_code == 0
    result = runner.invoke(app, ["claims", "--list", "--quick"])
    assert result.exit_code == 0 and "negative_eigenvalues_parity" in result.output


def test_train_lm_with_num_train_goes_over_the_fixed_set_in_epochs_each_in_a_new_order(monkeypatch):
    from mixerlab.bench.claims import base
    from mixerlab.tasks.base import TaskData

    seen: list[list[int]] = []
    real_batch = TaskData.batch

    def record(self, index, device="cpu"):
        seen.append(torch.arange(len(self))[index].tolist())
        return real_batch(self, index, device)

    monkeypatch.setattr(TaskData, "batch", record)
    options = {"vocab_size": 16, "seq_len": 16, "num_kv_pairs": [2], "num_test": 4}
    model = {"dim": 8, "depth": 1, "mixer": "attention"}
    base.train_lm("mqar", options, model, steps=6, batch_size=2, lr=1e-3, seed=0, num_train=6)
    flat = [i for step in seen for i in step]
    first, second = flat[:6], flat[6:]
    # Every example once per epoch, and the second epoch in another order.
    assert sorted(first) == sorted(second) == list(range(6)) and first != second
    seen.clear()
    base.train_lm("mqar", options, model, steps=3, batch_size=2, lr=1e-3, seed=0)
    # Without num_train every step takes fresh examples.
    assert [i for step in seen for i in step] == list(range(6))
