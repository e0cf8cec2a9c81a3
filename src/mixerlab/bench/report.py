"""The report: a leaderboard with costs and plots, as one self-contained HTML page plus PNG files.

Per model (token mixer) and width, the learning rate with the best mean metric over seeds is
chosen ("best-of-lr"); the table and plots show that mean with the standard deviation over seeds.
Plots (matplotlib, Agg backend): metric vs state size (log x), metric vs width, metric per slice
(e.g. per number of key-value pairs or per test length), and the spread across seeds. The HTML
embeds the PNGs as base64, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixerlab.errors import ConfigError

Log = Any


@dataclass
class Entry:
    """One (mixer, width) at its best learning rate."""

    mixer: str
    dim: int
    lr: float
    metric_name: str
    higher_is_better: bool
    values: list[float]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        vals = [v for v in self.values if math.isfinite(v)]
        return statistics.fmean(vals) if vals else float("nan")

    @property
    def std(self) -> float:
        vals = [v for v in self.values if math.isfinite(v)]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    def cost(self, key: str) -> float:
        vals = [r[key] for r in self.rows if r.get(key) is not None]
        return statistics.fmean(vals) if vals else float("nan")

    def slice_means(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in self.rows:
            for key, values in (row.get("slices") or {}).items():
                for value, metric in values.items():
                    out[key][value].append(metric)
        return {k: {v: statistics.fmean(m) for v, m in vals.items()} for k, vals in out.items()}


def _metric(row: dict[str, Any]) -> float:
    value = row.get("metric")
    return float("nan") if value is None else float(value)


def group_label(row: dict[str, Any], group_by: list[str] | None) -> str:
    """The row's label: its ``mixer`` column, or the values of the chosen sweep axes."""
    if not group_by:
        return row["mixer"]
    axes = row.get("axes") or {}
    return ", ".join(
        f"{path.split('.')[-1]}={_axis_text(axes.get(path, row.get(path)))}" for path in group_by
    )


def _axis_text(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return "-" if value is None else str(value)


def leaderboard(rows: list[dict[str, Any]], group_by: list[str] | None = None) -> list[Entry]:
    """Best-of-lr entries per (label, width), best first.

    The label is the run's ``mixer`` column (its model), or the values of the sweep axes named in
    ``group_by`` (e.g. ``["model.options.mixing"]``). A baseline of another field (no width, no
    learning rate) is one entry with ``dim = 0``.
    """
    groups: dict[tuple[str, int, float], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(group_label(row, group_by), row["dim"] or 0, row["lr"] or 0.0)].append(row)
    best: dict[tuple[str, int], Entry] = {}
    for (mixer, dim, lr), members in sorted(groups.items()):
        hib = bool(members[0]["higher_is_better"])
        entry = Entry(mixer, dim, lr, members[0]["metric_name"], hib, [_metric(r) for r in members], members)
        current = best.get((mixer, dim))
        if current is None or _better(entry.mean, current.mean, hib):
            best[(mixer, dim)] = entry
    entries = list(best.values())
    hib = entries[0].higher_is_better if entries else True
    worst = -math.inf if hib else math.inf
    entries.sort(key=lambda e: (e.mean if math.isfinite(e.mean) else worst, e.dim), reverse=hib)
    return entries


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    if not math.isfinite(b):
        return math.isfinite(a)
    if not math.isfinite(a):
        return False
    return a > b if higher_is_better else a < b


def _colors(mixers: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(mixers) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(sorted(mixers))}


MARKERS = "osD^vP*Xh<>"


def _plot_value(entry: Entry) -> float:
    """A plottable metric: a run without any evaluation is drawn at the worst end (0 for accuracy)."""
    if math.isfinite(entry.mean):
        return entry.mean
    return 0.0 if entry.higher_is_better else float("nan")


def _metric_label(entries: list[Entry]) -> str:
    name = entries[0].metric_name.replace("_", " ")
    return f"{name} ({'higher' if entries[0].higher_is_better else 'lower'} is better)"


def plot_state_size(entries: list[Entry], colors: dict[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    dims = sorted({e.dim for e in entries})
    for e in entries:
        # A baseline of another field keeps no recurrent state: drawn at 1 like a stateless model.
        state = e.cost("state_size_eval")
        x = max(state if math.isfinite(state) else 1.0, 1.0)
        ax.errorbar(
            x,
            _plot_value(e),
            yerr=e.std,
            fmt=MARKERS[dims.index(e.dim) % len(MARKERS)],
            color=colors[e.mixer],
            ms=8,
            capsize=3,
        )
    for mixer in sorted(colors):
        ax.plot([], [], "o", color=colors[mixer], label=mixer)
    for i, dim in enumerate(dims):
        ax.plot([], [], MARKERS[i % len(MARKERS)], color="gray", label=f"dim={dim}")
    ax.set_xscale("log")
    ax.set_xlabel("state size (scalars per sequence at the longest test length, log scale)")
    ax.set_ylabel(_metric_label(entries))
    ax.set_title("Metric vs recurrent-state size (best lr, mean ± std over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best", ncol=2)
    fig.tight_layout()
    return fig


def plot_width(entries: list[Entry], colors: dict[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e in entries:
        if e.dim == 0:  # a baseline has no width: a level line across the plot
            ax.axhline(_plot_value(e), color=colors[e.mixer], linestyle="--", label=f"{e.mixer} (baseline)")
    for mixer in sorted(colors):
        mine = sorted((e for e in entries if e.mixer == mixer and e.dim > 0), key=lambda e: e.dim)
        if not mine:
            continue
        ax.errorbar(
            [e.dim for e in mine],
            [_plot_value(e) for e in mine],
            yerr=[e.std for e in mine],
            marker="o",
            color=colors[mixer],
            label=mixer,
            capsize=3,
        )
    ax.set_xscale("log", base=2)
    dims = sorted({e.dim for e in entries if e.dim > 0})
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("model width (dim)")
    ax.set_ylabel(_metric_label(entries))
    ax.set_title("Metric vs width (best lr, mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", ncol=2)
    fig.tight_layout()
    return fig


def plot_slices(entries: list[Entry], colors: dict[str, Any], key: str):
    import matplotlib.pyplot as plt

    dims = sorted({e.dim for e in entries if e.dim > 0}) or [0]
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 4), squeeze=False, sharey=True)
    for ax, dim in zip(axes[0], dims):
        # Baselines (dim 0) appear in every panel.
        for e in sorted((e for e in entries if e.dim in (dim, 0)), key=lambda e: e.mixer):
            values = e.slice_means().get(key, {})
            xs = sorted(values, key=_numeric)
            ax.plot(
                [_numeric(x) for x in xs],
                [values[x] for x in xs],
                marker="o",
                color=colors[e.mixer],
                label=e.mixer,
            )
        ticks = sorted({_numeric(v) for e in entries for v in e.slice_means().get(key, {})})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_title(f"dim={dim}")
        ax.set_xlabel(key.replace("_", " "))
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(_metric_label(entries))
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle(f"Metric per {key.replace('_', ' ')} (best lr, mean over seeds)")
    fig.tight_layout()
    return fig


def plot_seeds(entries: list[Entry], colors: dict[str, Any]):
    import matplotlib.pyplot as plt

    dims = sorted({e.dim for e in entries if e.dim > 0}) or [0]
    mixers = sorted(colors)
    width = max(7.0, max(4.5, 0.6 * len(mixers)) * len(dims))
    fig, axes = plt.subplots(1, len(dims), figsize=(width, 4.5), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        by_mixer = {e.mixer: e for e in entries if e.dim in (dim, 0)}
        for i, mixer in enumerate(mixers):
            e = by_mixer.get(mixer)
            if e is None:
                continue
            ax.bar(i, _plot_value(e), yerr=e.std, color=colors[mixer], alpha=0.6, capsize=4)
            seeds = [v if math.isfinite(v) else _plot_value(e) for v in e.values]
            ax.scatter([i] * len(seeds), seeds, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(mixers)), mixers, rotation=45, ha="right")
        ax.set_title(f"dim={dim}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel(_metric_label(entries))
    fig.suptitle("Spread across seeds (best lr; bar: mean ± std, dots: seeds)")
    fig.tight_layout()
    return fig


def _numeric(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float) and abs(value) >= 1e4:
        return f"{value:.3g}"
    return f"{value:.{digits}g}"


TABLE_COLUMNS = (
    "rank",
    "mixer",
    "dim",
    "metric",
    "± std",
    "seeds",
    "best lr",
    "params",
    "FLOPs/token",
    "state (train T)",
    "state (max test T)",
    "tokens/s",
    "peak MB",
    "train CPU s",
    "status",
)


def table_rows(entries: list[Entry]) -> list[list[str]]:
    out = []
    for i, e in enumerate(entries, 1):
        statuses = sorted({r["status"] for r in e.rows})
        out.append(
            [
                str(i),
                e.mixer,
                str(e.dim) if e.dim else "-",
                _fmt(e.mean),
                _fmt(e.std, 2),
                str(len(e.values)),
                f"{e.lr:g}" if e.lr else "-",
                _count(e.cost("params")),
                _fmt(e.cost("flops_per_token"), 3),
                _count(e.cost("state_size")),
                _count(e.cost("state_size_eval")),
                _fmt(e.cost("tokens_per_s"), 3),
                _fmt(e.cost("peak_memory_mb"), 3),
                _fmt(e.cost("train_cpu_seconds"), 3),
                ",".join(statuses),
            ]
        )
    return out


def _count(value: float) -> str:
    return f"{int(value):,}" if math.isfinite(value) else "-"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def load_rows(
    store: str | os.PathLike, *, sweep: str | None = None, task: str | None = None
) -> list[dict[str, Any]]:
    """The rows of an existing store matching ``sweep`` / ``task``, creating nothing.

    A missing or unreadable store, or filters that match nothing, raise
    :class:`~mixerlab.errors.ConfigError` saying what the store does hold.
    """
    from mixerlab.bench.store import ResultStore, check_store

    check_store(store, must_exist=True, owner="report")
    results = ResultStore(store, create=False)
    try:
        rows = results.rows(sweep=sweep, task=task)
        if rows:
            return rows
        for name, value in (("sweep", sweep), ("task", task)):
            held = results.distinct(name)
            if value is not None and value not in held:
                raise ConfigError("report", name, value, f"the store holds {name}s {held}")
        if sweep is not None and task is not None:
            allowed = f"sweep {sweep!r} has no runs on task {task!r}"
            raise ConfigError("report", "task", task, allowed)
        raise ConfigError("report", "store", str(store), "the store holds no runs yet")
    finally:
        results.close()


def check_group_by(rows: list[dict[str, Any]], group_by: list[str] | None) -> None:
    """Every axis named in ``group_by`` must be an axis of some run (or a column)."""
    known = {path for row in rows for path in (row.get("axes") or {})}
    for path in group_by or []:
        if path not in known and path not in rows[0]:
            raise ConfigError("report", "group_by", path, f"the runs' sweep axes are {sorted(known)}")


def terminal_table(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """The leaderboard's columns that matter in a terminal, and one row per entry (best first).

    Throughput is tokens/s for token tasks and examples/s otherwise; "ended by" says whether the
    schedule (the step budget), the target metric, the CPU safety cap or a divergence ended each
    seed's run.
    """
    columns = ["model", "dim", "metric ± std", "seeds", "lr", "params", "state", "throughput", "ended by"]
    rows = []
    for e in entries:
        tokens = e.cost("tokens_per_s")
        speed = f"{tokens:,.0f} tok/s" if math.isfinite(tokens) else _examples(e)
        ended = sorted({ENDED_BY.get(r["status"], r["status"]) for r in e.rows})
        rows.append(
            [
                e.mixer,
                str(e.dim) if e.dim else "-",
                f"{_fmt(e.mean)} ± {_fmt(e.std, 2)}",
                str(len(e.values)),
                f"{e.lr:g}" if e.lr else "-",
                _count(e.cost("params")),
                _count(e.cost("state_size_eval")),
                speed,
                ", ".join(ended),
            ]
        )
    return columns, rows


# What ended a run, by its status, in words.
ENDED_BY = {
    "finished": "schedule",
    "early_stopped": "target",
    "time_limit": "cpu cap",
    "diverged": "diverged",
}


def _examples(e: Entry) -> str:
    value = e.cost("examples_per_s")
    return f"{value:,.0f} ex/s" if math.isfinite(value) else "-"


def write_report(
    store: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    sweep: str | None = None,
    task: str | None = None,
    group_by: list[str] | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Write ``report.html`` and the PNGs for the results in ``store``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    rows = load_rows(store, sweep=sweep, task=task)
    check_group_by(rows, group_by)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = sorted({r["task"] for r in rows})
    if len(tasks) > 1:
        task = rows[-1]["task"]
        log(f"the store holds several tasks {tasks}; reporting on the latest, {task!r} (choose with --task)")
        rows = [r for r in rows if r["task"] == task]
    task = rows[0]["task"]
    entries = leaderboard(rows, group_by)
    colors = _colors(sorted({e.mixer for e in entries}))
    figures = {
        "metric_vs_state_size": ("Metric vs state size", plot_state_size(entries, colors)),
        "metric_vs_width": ("Metric vs width", plot_width(entries, colors)),
    }
    # A slice with a single value (e.g. one test length) says nothing the overall metric does not.
    slice_keys = sorted(
        k
        for k in {k for r in rows for k in (r.get("slices") or {})}
        if len({v for r in rows for v in ((r.get("slices") or {}).get(k) or {})}) > 1
    )
    for key in slice_keys:
        figures[f"metric_per_{key}"] = (
            f"Metric per {key.replace('_', ' ')}",
            plot_slices(entries, colors, key),
        )
    figures["seed_spread"] = ("Spread across seeds", plot_seeds(entries, colors))
    images: dict[str, str] = {}
    pngs = {}
    for name, (_, fig) in figures.items():
        data = _png(fig)
        path = out / f"{name}.png"
        path.write_bytes(data)
        pngs[name] = str(path)
        images[name] = base64.b64encode(data).decode()
    page = _html(task, rows, entries, figures, images)
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    log(f"report: {html_path} ({len(pngs)} plots, {len(entries)} entries)")
    return {"html": str(html_path), "pngs": pngs, "entries": len(entries), "task": task}


def _html(task: str, rows, entries: list[Entry], figures, images: dict[str, str]) -> str:
    esc = html.escape
    versions = rows[-1].get("versions") or {}
    options = (rows[-1].get("config") or {}).get("task_options", {})
    head = "".join(f"<th>{esc(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in table_rows(entries))
    imgs = "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{images[name]}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for name, (title, _) in figures.items()
    )
    sweeps = ", ".join(sorted({str(r["sweep"]) for r in rows}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mixerlab report: {esc(task)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} td:nth-child(2) {{ text-align: left; font-weight: 600; }}
figure {{ display: inline-block; margin: 1em; }} img {{ max-width: 100%; }}
code {{ background: #f6f6f6; padding: 1px 4px; }}
</style></head><body>
<h1>mixerlab report: <code>{esc(task)}</code></h1>
<p>Sweep(s): {esc(sweeps)}. {len(rows)} runs. Task options: <code>{esc(str(options))}</code>.</p>
<p>Per mixer and width, the learning rate with the best mean {esc(entries[0].metric_name)} over seeds;
± is the standard deviation over seeds. FLOPs/token: forward pass, counted by
<code>torch.utils.flop_counter</code>. Peak MB: one training step (on CPU an estimate: weights,
grads, AdamW moments and saved activations). tokens/s: training throughput of one worker
(wall clock); train CPU s: CPU time of the run, the better guide on a shared machine.</p>
<h2>Leaderboard</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Plots</h2>
{imgs}
<p>Versions: <code>{esc(", ".join(f"{k}={v}" for k, v in versions.items()))}</code></p>
</body></html>
"""
