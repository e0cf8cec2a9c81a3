"""``mixerlab speed`` at a toy size: every figure is produced, ratios use same-run baselines, files
are written and BENCHMARKS.md sections are replaced without touching the rest."""

from __future__ import annotations

import json

import pytest
import torch

from mixerlab.bench.measure import peak_memory_mb, time_call
from mixerlab.bench.speed import SpeedConfig, run_speed
from mixerlab.bench.speed_report import summary, targets, update_benchmarks_md, write_files
from mixerlab.errors import ConfigError


@pytest.fixture(scope="module")
def results():
    cfg = SpeedConfig(
        mixers=["attention", "sliding_window"],
        lengths=[16, 32],
        batch_size=2,
        dim=16,
        num_heads=2,
        dtypes=["float32"],
        repeats=1,
        warmup=0,
        decode_contexts=[8, 16],
        decode_steps=2,
        reference_length=16,
    )
    return run_speed(cfg, log=lambda _: None)


def test_every_case_is_measured(results):
    assert {(r["mixer"], r["seq_len"]) for r in results.cases} == {
        (m, n) for m in ("attention", "sliding_window") for n in (16, 32)
    }
    for row in results.cases:
        assert "error" not in row, row
        assert row["fwdbwd_tok_s"] > 0 and row["fwd_tok_s"] > 0 and row["flops_fwdbwd"] > 0
        # each mixer's rows are shares of the matmul measured just before that mixer
        yardstick = results.mixer_matmul_gflops[row["mixer"]]["float32"]
        assert 0 < row["frac_matmul_peak"] == pytest.approx(row["gflops"] / yardstick)
        assert row["matmul_gflops"] == yardstick
    assert set(results.mixer_matmul_gflops) == {"attention", "sliding_window"}
    assert "measured just before it" in summary(results, markdown=True)
    assert len(results.decode) == 4 and all(r["decode_tok_s"] > 0 for r in results.decode)
    assert results.matmul_gflops_end["float32"] > 0 and "measured again at the end" in summary(results)


def test_reference_speedup_is_a_same_run_ratio(results):
    for row in results.reference:
        assert row["speedup"] == pytest.approx(row["fast_fwdbwd_tok_s"] / row["ref_fwdbwd_tok_s"])


def test_attention_is_compared_with_plain_sdpa(results):
    peers = [r for r in results.peers if r["mixer"] == "attention"]
    assert peers and all(r["ratio"] > 0 for r in peers)
    for r in peers:  # the ratio's mixerlab side is timed right after the peer, not read from the grid
        assert r["ratio"] == pytest.approx(r["ours_fwdbwd_tok_s"] / r["peer_fwdbwd_tok_s"])
    # and like for like: our layer without rotary, which the plain SDPA layer does not have
    for r in peers:
        assert r["same_settings"] == {"rotary_base": None}
        assert r["same_ratio"] == pytest.approx(r["same_fwdbwd_tok_s"] / r["peer_fwdbwd_tok_s"])
    assert any("same settings (rotary_base=None)" in row[0] for row in targets(results)[1:])


def test_summary_files_and_benchmarks_section(results, tmp_path):
    text = summary(results)
    assert "attention" in text and "targets:" in text
    paths = write_files(results, tmp_path)
    data = json.loads((tmp_path / "speed.json").read_text())
    assert len(data["cases"]) == 4 and (tmp_path / "speed.csv").read_text().count("\n") == 5
    assert any(p.suffix == ".png" for p in paths)
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nhand-written notes stay\n")
    update_benchmarks_md(md, "speed-quick", "mixerlab speed --quick", results)
    update_benchmarks_md(md, "speed-quick", "mixerlab speed --quick", results)
    out = md.read_text()
    assert "hand-written notes stay" in out and out.count("<!-- speed-quick:start -->") == 1
    assert "| attention |" in out


def test_targets_report_status_for_each_row(results):
    rows = targets(results)
    assert rows[0] == ["target", "mixer", "figure", "status"]
    assert all(r[3] in {"met", "MISSED", "not measured"} for r in rows[1:])
    memory = [r for r in rows if r[0].startswith("peak memory per token") and r[1] == "sliding_window"]
    assert len(memory) == 1 and memory[0][0] == "peak memory per token L=32 within 1.3x of L=16"
    assert not any(r[0].startswith("peak memory") and r[1] == "attention" for r in rows)  # growing state


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="mixers='nope'"):
        run_speed(SpeedConfig(mixers=["nope"]))
    with pytest.raises(ConfigError, match="dtypes='float8'"):
        run_speed(SpeedConfig(mixers=["attention"], dtypes=["float8"]))


def test_peak_memory_sees_a_large_allocation():
    mib = peak_memory_mb(lambda: torch.ones(64 * 2**20 // 4).sum())
    assert mib != mib or mib >= 48  # nan where /proc/self/clear_refs is unavailable


def test_time_call_reports_median():
    calls = []
    t = time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and t.repeats == 3 and t.best_s <= t.median_s


def _tiny(mixers: list[str], **overrides) -> SpeedConfig:
    cfg = SpeedConfig(
        mixers=mixers,
        lengths=[16],
        batch_size=2,
        dim=16,
        num_heads=2,
        dtypes=["float32"],
        repeats=1,
        warmup=0,
        decode_contexts=[8],
        decode_steps=2,
        reference_length=16,
        peers=False,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_an_interrupted_run_keeps_finished_mixers_and_resumes(tmp_path):
    from mixerlab.bench.speed import SpeedResults

    class Interrupted(Exception):
        pass

    def save_then_stop(partial):
        write_files(partial, tmp_path, plot=False)
        raise Interrupted

    with pytest.raises(Interrupted):
        run_speed(_tiny(["mingru", "minlstm"]), log=lambda _: None, on_mixer_done=save_then_stop)
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["done"] == ["mingru"] and {r["mixer"] for r in saved["cases"]} == {"mingru"}

    previous = SpeedResults.from_dict(saved)
    logs: list[str] = []
    resumed = run_speed(_tiny(["mingru", "minlstm"]), log=logs.append, previous=previous)
    assert resumed.done == ["mingru", "minlstm"]
    kept = [r for r in resumed.cases if r["mixer"] == "mingru"]
    assert kept == saved["cases"]  # not measured again
    assert {r["mixer"] for r in resumed.cases} == {"mingru", "minlstm"}
    assert resumed.matmul_gflops == saved["matmul_gflops"] and len(resumed.resumed_matmul_gflops) == 1
    for row in resumed.cases:  # each row's share is of the matmul measured just before its mixer
        peaks = saved["mixer_matmul_gflops"] if row["mixer"] == "mingru" else resumed.mixer_matmul_gflops
        assert row["matmul_gflops"] == peaks[row["mixer"]]["float32"]
        assert row["frac_matmul_peak"] == pytest.approx(row["gflops"] / row["matmul_gflops"])
    assert any("mingru" in line and "kept" in line for line in logs)
    assert "resumed after an interruption" in summary(resumed)

    # resuming with a subset measures only that subset and keeps every finished mixer
    again = run_speed(
        _tiny(["mingru", "minlstm", "gla"]),
        log=lambda _: None,
        previous=SpeedResults.from_dict(resumed.to_dict()),
    )
    subset = run_speed(_tiny(["gla"]), log=lambda _: None, previous=SpeedResults.from_dict(resumed.to_dict()))
    assert subset.done == ["mingru", "minlstm", "gla"] == again.done
    assert [r for r in subset.cases if r["mixer"] != "gla"] == json.loads(json.dumps(resumed.cases))


def test_resume_with_other_settings_is_refused():
    from mixerlab.bench.speed import SpeedResults

    first = run_speed(_tiny(["mingru"]), log=lambda _: None)
    previous = SpeedResults.from_dict(json.loads(json.dumps(first.to_dict())))
    with pytest.raises(ConfigError, match="lengths=\\[32\\]"):
        run_speed(_tiny(["mingru"], lengths=[32]), log=lambda _: None, previous=previous)


def test_cli_resume_without_a_previous_run_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    import mixerlab.cli.speed  # noqa: F401  (adds the command)
    from mixerlab.cli.app import app

    result = CliRunner().invoke(
        app, ["speed", "--quick", "--mixers", "mingru", "--resume", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "resume=True" in result.output and "speed.json does not exist" in result.output


def test_cli_re_renders_a_saved_run_without_measuring(results, tmp_path):
    from typer.testing import CliRunner

    import mixerlab.cli.speed  # noqa: F401  (adds the command)
    from mixerlab.cli.app import app

    write_files(results, tmp_path / "run", plot=False)
    md = tmp_path / "BENCHMARKS.md"
    args = ["speed", "--from-json", str(tmp_path / "run" / "speed.json"), "--out", str(tmp_path / "again")]
    result = CliRunner().invoke(app, [*args, "--benchmarks-md", str(md)])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "speed.json").read_text())
    assert again["cases"] == json.loads(json.dumps(results.cases))  # nothing re-measured
    text = md.read_text()
    assert "<!-- speed:start -->" in text and "| sliding_window |" in text and "re-rendered by" in text
    # a run over a subset of the mixers goes to its own section; the full grid's stays as it was
    named = CliRunner().invoke(app, [*args, "--benchmarks-md", str(md), "--section", "speed-subset"])
    assert named.exit_code == 0, named.output
    both = md.read_text()
    assert both.startswith(text.rstrip()) and both.count("<!-- speed-subset:start -->") == 1
    missing = CliRunner().invoke(app, ["speed", "--from-json", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "from_json=" in missing.output


def test_peer_cost_is_extrapolated_with_its_growth():
    from mixerlab.bench.speed import _extrapolate

    assert _extrapolate([], 4096) == 0.0
    assert _extrapolate([(1024, 2.0)], 4096) == pytest.approx(8.0)  # at least linear
    assert _extrapolate([(256, 1.0), (1024, 16.0)], 4096) == pytest.approx(256.0)  # quadratic
    assert _extrapolate([(256, 2.0), (1024, 1.0)], 2048) == pytest.approx(2.0)  # never below linear


def test_redo_needs_resume_and_a_finished_mixer(tmp_path):
    from typer.testing import CliRunner

    import mixerlab.cli.speed  # noqa: F401  (adds the command)
    from mixerlab.cli.app import app

    result = CliRunner().invoke(app, ["speed", "--quick", "--redo", "gla", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "only allowed with --resume" in result.output


def test_whole_sequence_filters_are_sized_for_the_longest_length():
    from mixerlab.bench.speed import build_mixer

    cfg = SpeedConfig(lengths=[256, 4096], decode_contexts=[1024, 8192], decode_steps=32, dim=16, num_heads=2)
    for name in ("hyena", "pgn"):
        mixer = build_mixer(name, cfg, torch.float32)
        y, state = mixer(torch.randn(1, 8192, 16))  # past the default max_len of 2048
        for _ in range(cfg.decode_steps):
            y, state = mixer(torch.randn(1, 1, 16), state=state)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("probe_mb", "mb_growth", "time_growth", "skipped"),
    [(100.0, 2, 1, True), (0.5, 2, 1, False), (100.0, 1, 2, False), (10.0, 1, 1, False)],
)
def test_a_reference_that_would_not_fit_in_memory_is_estimated_not_run(
    monkeypatch, probe_mb, mb_growth, time_growth, skipped
):
    from mixerlab.bench import speed

    cfg = SpeedConfig(lengths=[1024], dim=16, num_heads=2, repeats=1, warmup=0, reference_length=1024)
    module = speed.build_mixer("gla", cfg, torch.float32)
    # probes at 128 and 256 tokens: memory from ``probe_mb`` growing like L^mb_growth, time like
    # L^time_growth (a reference may be quadratic in time and linear in memory)
    monkeypatch.setattr(
        speed,
        "_probe",
        lambda m, c, n, d: (1e-4 * (n / 128) ** time_growth, probe_mb * (n / 128) ** mb_growth),
    )
    monkeypatch.setattr(speed, "available_memory_mb", lambda: 2000.0)
    row = speed._measure_reference("gla", module, cfg, torch.float32, [])
    assert ("ref_estimated_mb" in row) == skipped
    if skipped:
        at_256 = probe_mb * 2**mb_growth
        assert row["ref_estimated_mb"] == pytest.approx(at_256 * 4**mb_growth)
        assert "MiB peak memory" in row["error"]
    else:
        assert row["speedup"] > 0 and "error" not in row
    assert module.mode == type(module).modes[0]  # the fast form is restored either way


def test_a_reference_probe_times_and_measures_one_run():
    from mixerlab.bench.speed import _probe, build_mixer

    cfg = SpeedConfig(lengths=[64], dim=16, num_heads=2)
    module = build_mixer("gla", cfg, torch.float32)
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    seconds, _ = _probe(module, cfg, 64, torch.float32)
    assert seconds > 0 and len(calls) == 1
    assert all(p.grad is None for p in module.parameters())


def test_memory_cap_turns_an_oversized_allocation_into_an_error_and_is_lifted_after():
    from mixerlab.bench.measure import memory_cap

    with memory_cap(256):
        small = torch.ones(16 * 2**20 // 4)  # 16 MiB: under the cap
        with pytest.raises((RuntimeError, MemoryError)):
            torch.ones(2 * 2**30 // 4)  # 2 GiB: over it
    assert small.sum() == small.numel()
    assert torch.ones(2 * 2**30 // 4)[-1] == 1  # the cap is gone once the block ends


def test_a_mixer_that_runs_out_of_memory_gets_error_rows_and_the_run_goes_on(monkeypatch):
    from mixerlab.bench import speed

    real = speed.measure_layer

    def greedy(module, *args, **kwargs):
        if type(module).__name__ == "GatedLinearAttention":
            raise MemoryError("capped")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(speed, "measure_layer", greedy)
    results = run_speed(_tiny(["gla", "sliding_window"]), log=lambda _: None)
    assert results.done == ["gla", "sliding_window"]
    gla = [r for r in results.cases if r["mixer"] == "gla"]
    assert gla and all("MemoryError" in r["error"] for r in gla)
    assert all("error" not in r for r in results.cases if r["mixer"] == "sliding_window")


def test_a_length_whose_extrapolated_memory_exceeds_half_the_free_memory_is_skipped(monkeypatch):
    from mixerlab.bench import speed

    def fake(module, call, cfg, seq_len, dtype, **kwargs):  # 1000 MiB per 16 tokens
        return {"fwdbwd_s": 1e-3, "fwdbwd_tok_s": 1e3, "gflops": 1.0, "peak_mem_mb": 1000.0 * seq_len / 16}

    monkeypatch.setattr(speed, "measure_layer", fake)
    monkeypatch.setattr(speed, "available_memory_mb", lambda: 5000.0)
    cfg = _tiny(["gla"], lengths=[16, 32, 64])
    cases = run_speed(cfg, log=lambda _: None).cases
    assert [("error" in r) for r in cases] == [False, False, True]  # 4000 MiB > 2500 at L=64
    assert "4,000 MiB peak memory" in cases[2]["error"]
