"""Tables, files, plot and target checks for ``mixerlab speed`` results.

The targets are those of the speed issue; each is evaluated from figures measured in one run and
reported as met, missed (with the figure) or not measured.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mixerlab.bench.speed import SpeedResults, finite
from mixerlab.registry import TOKEN_MIXERS

LINEAR_ATTENTION_FAMILY = ("linear_attention", "retention", "gla", "deltanet")


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return format(value, spec) if finite(value) else "–"


def _case(results: SpeedResults, mixer: str, dtype: str, seq_len: int) -> dict[str, Any] | None:
    for row in results.cases:
        if (
            row["mixer"] == mixer
            and row["dtype"] == dtype
            and row.get("seq_len") == seq_len
            and "error" not in row
        ):
            return row
    return None


def _fixed_state(mixer: str) -> bool:
    """Whether the mixer's state has a fixed size (unregistered names count as fixed)."""
    return mixer not in TOKEN_MIXERS or TOKEN_MIXERS.entry(mixer).meta.get("state_kind") == "fixed"


def throughput_table(results: SpeedResults, dtype: str) -> list[list[str]]:
    lengths = results.config["lengths"]
    header = ["mixer"] + [f"fwd+bwd tok/s L={n}" for n in lengths] + [f"fwd tok/s L={lengths[-1]}"]
    header += [f"peak MiB L={n}" for n in lengths] + [f"% matmul L={n}" for n in lengths]
    rows = [header]
    for mixer in sorted({r["mixer"] for r in results.cases}):
        cells = [mixer]
        cases = [_case(results, mixer, dtype, n) for n in lengths]
        cells += [_fmt(c["fwdbwd_tok_s"]) if c else "–" for c in cases]
        cells.append(_fmt(cases[-1]["fwd_tok_s"]) if cases[-1] else "–")
        cells += [_fmt(c["peak_mem_mb"]) if c else "–" for c in cases]
        cells += [_fmt(100 * c["frac_matmul_peak"], ".0f") if c else "–" for c in cases]
        rows.append(cells)
    return rows


def decode_table(results: SpeedResults, dtype: str) -> list[list[str]]:
    contexts = results.config["decode_contexts"]
    rows = [["mixer", *[f"decode tok/s ctx={c}" for c in contexts], "state"]]
    for mixer in sorted({r["mixer"] for r in results.decode}):
        by_ctx = {r["context"]: r for r in results.decode if r["mixer"] == mixer and r["dtype"] == dtype}
        kind = TOKEN_MIXERS.entry(mixer).meta.get("state_kind", "?") if mixer in TOKEN_MIXERS else "?"
        rows.append([mixer, *[_fmt(by_ctx.get(c, {}).get("decode_tok_s")) for c in contexts], kind])
    return rows


def reference_table(results: SpeedResults) -> list[list[str]]:
    rows = [["mixer", "L", "fast fwd+bwd tok/s", "reference fwd+bwd tok/s", "speed-up", "note"]]
    for r in sorted(results.reference, key=lambda r: r["mixer"]):
        note = r.get("error", "")
        speedup = r.get("speedup", r.get("speedup_lower_bound"))
        prefix = ">" if "speedup_lower_bound" in r else ""
        rows.append(
            [
                r["mixer"],
                str(r["seq_len"]),
                _fmt(r.get("fast_fwdbwd_tok_s")),
                _fmt(r.get("ref_fwdbwd_tok_s")),
                prefix + _fmt(speedup, ".1f") + "x" if finite(speedup) else "–",
                note,
            ]
        )
    return rows


def _settings(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _ratio(value: Any) -> str:
    return _fmt(value, ".2f") + "x" if finite(value) else "–"


def peer_table(results: SpeedResults) -> list[list[str]]:
    rows = [
        [
            "mixer",
            "peer",
            "kind",
            "L",
            "peer fwd+bwd tok/s",
            "mixerlab / peer",
            "same settings",
            "mixerlab (same settings) / peer",
            "note",
        ]
    ]
    for r in results.peers:
        rows.append(
            [
                r["mixer"],
                r["peer"],
                r.get("peer_kind", ""),
                str(r["seq_len"]),
                _fmt(r.get("peer_fwdbwd_tok_s")),
                _ratio(r.get("ratio")),
                _settings(r.get("same_settings", {})),
                _ratio(r.get("same_ratio")),
                r.get("error", "")
                + (
                    f" (ratio about {r['ratio_estimated']:,.0f}x)" if finite(r.get("ratio_estimated")) else ""
                ),
            ]
        )
    return rows


def targets(results: SpeedResults) -> list[list[str]]:
    """Each target of the speed issue: met / missed with its figure / not measured."""
    dt = results.config["dtypes"][0]
    lengths = results.config["lengths"]
    rows = [["target", "mixer", "figure", "status"]]

    def add(target: str, mixer: str, figure: float | None, ok: bool | None, unit: str = "x") -> None:
        status = "not measured" if ok is None else ("met" if ok else "MISSED")
        rows.append([target, mixer, _fmt(figure, ".2f") + unit if finite(figure) else "–", status])

    for r in sorted(results.reference, key=lambda r: r["mixer"]):
        if r["seq_len"] >= 4096:
            s = r.get("speedup", r.get("speedup_lower_bound"))
            add("fast >= 10x reference (fwd+bwd, L=4k)", r["mixer"], s, None if s is None else s >= 10)
    if 1024 in lengths and 16384 in lengths:
        for mixer in sorted({r["mixer"] for r in results.cases}):
            if not _fixed_state(mixer):
                continue
            a, b = _case(results, mixer, dt, 1024), _case(results, mixer, dt, 16384)
            ratio = a["fwdbwd_tok_s"] / b["fwdbwd_tok_s"] if a and b else None
            add("time/token L=16k within 1.3x of L=1k", mixer, ratio, None if ratio is None else ratio <= 1.3)
    if len(lengths) >= 2:
        # peak memory linear in L: memory per token at the longest length against the one before
        # (fixed costs such as weights only make the later figure smaller)
        short, long = sorted(lengths)[-2:]
        for mixer in sorted({r["mixer"] for r in results.cases}):
            if not _fixed_state(mixer):
                continue
            a, b = _case(results, mixer, dt, short), _case(results, mixer, dt, long)
            ok = a and b and finite(a["peak_mem_mb"]) and finite(b["peak_mem_mb"]) and a["peak_mem_mb"] > 0
            ratio = (b["peak_mem_mb"] / long) / (a["peak_mem_mb"] / short) if ok else None
            add(
                f"peak memory per token L={long} within 1.3x of L={short}",
                mixer,
                ratio,
                None if ratio is None else ratio <= 1.3,
            )
    if 4096 in lengths:
        for mixer in LINEAR_ATTENTION_FAMILY:
            c = _case(results, mixer, "float32", 4096)
            frac = c["frac_matmul_peak"] if c else None
            add(
                ">= 40% of fp32 matmul GFLOP/s at L=4k",
                mixer,
                None if frac is None else 100 * frac,
                None if frac is None else frac >= 0.4,
                unit="%",
            )
    contexts = results.config["decode_contexts"]
    if len(contexts) >= 2:
        for mixer in sorted({r["mixer"] for r in results.decode}):
            if not _fixed_state(mixer):
                continue
            by = {
                r["context"]: r.get("decode_tok_s")
                for r in results.decode
                if r["mixer"] == mixer and r["dtype"] == dt
            }
            lo, hi = by.get(contexts[0]), by.get(contexts[-1])
            ratio = lo / hi if finite(lo) and finite(hi) else None
            add(
                f"decode time/token ctx {contexts[-1]} within 1.2x of {contexts[0]}",
                mixer,
                ratio,
                None if ratio is None else ratio <= 1.2,
            )
    for r in results.peers:
        # the target is about the same operator, so the like-for-like ratio counts where there is one
        ratio = r.get("same_ratio", r.get("ratio"))
        if finite(ratio):
            need = 5.0 if r.get("peer_kind") == "loop" else 1.0
            same = f", same settings ({_settings(r['same_settings'])})" if "same_ratio" in r else ""
            add(
                f"vs peer {r['peer']} at L={r['seq_len']}{same} (>= {need:g}x)",
                r["mixer"],
                ratio,
                ratio >= need,
            )
    return rows


def render(rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def summary(results: SpeedResults, markdown: bool = False) -> str:
    parts = []
    m = results.machine
    peak = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results.matmul_gflops.items())
    parts.append(f"machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}; dense matmul {peak}")
    if results.matmul_gflops_end:
        end = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results.matmul_gflops_end.items())
        parts.append(f"dense matmul measured again at the end of the run: {end}")
    per_mixer = results.mixer_matmul_gflops
    for again in results.resumed_matmul_gflops:
        measured = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in again.items())
        if per_mixer:
            parts.append(f"resumed after an interruption (dense matmul at the restart: {measured})")
        else:
            parts.append(
                "resumed after an interruption; rows measured after it use the matmul of the resumed "
                f"run ({measured})"
            )
    if per_mixer:
        # a shared machine drifts within a run: each mixer's "% matmul" is a share of its own yardstick
        for dt in results.config["dtypes"]:
            each = ", ".join(f"{name} {peaks[dt]:.0f}" for name, peaks in per_mixer.items() if dt in peaks)
            parts.append(
                f"each mixer's % matmul is a share of the dense {dt} matmul measured just before it "
                f"(GFLOP/s): {each}"
            )
    cfg = results.config
    parts.append(
        f"B={cfg['batch_size']}, dim={cfg['dim']}, num_heads={cfg['num_heads']}; medians of "
        f"{cfg['repeats']} after {cfg['warmup']} warm-up"
    )
    for dt in cfg["dtypes"]:
        parts.append(f"\nthroughput and memory ({dt}):\n" + render(throughput_table(results, dt), markdown))
        parts.append(f"\ndecoding from a state ({dt}):\n" + render(decode_table(results, dt), markdown))
    parts.append("\nfast form vs its per-step reference:\n" + render(reference_table(results), markdown))
    if results.peers:
        parts.append("\nagainst peer implementations:\n" + render(peer_table(results), markdown))
    parts.append("\ntargets:\n" + render(targets(results), markdown))
    return "\n".join(parts)


def write_files(results: SpeedResults, out_dir: Path, *, plot: bool = True) -> list[Path]:
    """JSON (everything), CSV (one row per case) and a PNG of throughput vs sequence length; each
    file replaced atomically, so an interrupted write leaves the previous version."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "speed.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results.to_dict(), indent=1, default=str))
    tmp.replace(json_path)
    csv_path = out_dir / "speed.csv"
    keys = sorted({k for r in results.cases for k in r})
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(results.cases)
    tmp.replace(csv_path)
    paths = [json_path, csv_path]
    png = plot_throughput(results, out_dir / "speed.png") if plot else None
    if png is not None:
        paths.append(png)
    return paths


def plot_throughput(results: SpeedResults, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    dtypes = results.config["dtypes"]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(7 * len(dtypes), 5.5), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        for i, mixer in enumerate(sorted({r["mixer"] for r in results.cases})):
            pts = [
                (r["seq_len"], r["fwdbwd_tok_s"])
                for r in results.cases
                if r["mixer"] == mixer and r["dtype"] == dt and "error" not in r
            ]
            if pts:
                xs, ys = zip(*sorted(pts))
                # ten colours, then a new line style: every mixer stays identifiable in the legend
                style = ("-", "--", ":", "-.")[(i // 10) % 4]
                ax.plot(xs, ys, marker="o", linestyle=style, color=f"C{i % 10}", label=mixer)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_ylabel("fwd+bwd tokens/s")
        ax.set_title(f"throughput vs sequence length ({dt})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replace_section(path: Path, section: str, body: str) -> None:
    """Put ``body`` between ``<!-- section:start/end -->`` in ``path`` (appended if absent),
    keeping everything else; the file is replaced atomically."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    block = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def update_benchmarks_md(path: Path, section: str, command: str, results: SpeedResults) -> None:
    """Replace the ``section`` block of BENCHMARKS.md (between markers), keeping everything else."""
    m = results.machine
    body = "\n".join(
        [
            f"Command: `{command}`  ",
            f"Machine: {m['cpu']}, {m['threads']} threads ({m['cpu_capability']}), torch {m['torch']}, "
            f"Python {m['python']}  ",
            f"Date: {results.config.get('date', '')}",
            "",
            summary(results, markdown=True),
        ]
    )
    replace_section(path, section, body)
