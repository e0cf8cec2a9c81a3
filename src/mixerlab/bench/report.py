"""The report: a leaderboard with costs and plots, as one self-contained HTML page plus PNG files.

Per model (token mixer) and width, the learning rate with the best mean metric over seeds is
chosen ("best-of-lr"); the table and plots show that mean with the standard deviation over seeds.
The plots are :mod:`mixerlab.bench.report_plots`. A sweep over several tasks gets one section per
task. The HTML embeds the PNGs as base64, so it opens offline and can be mailed as one file.
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

from mixerlab.bench.report_plots import figures_for
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

    def fact(self, key: str) -> float:
        """A figure the run's transforms reported (the last transform that reports it), mean over seeds."""
        vals = []
        for row in self.rows:
            for item in row.get("history") or []:
                found = [f[key] for f in item.get("transforms") or [] if f.get(key) is not None]
                if found:
                    vals.append(float(found[-1]))
        return statistics.fmean(vals) if vals else float("nan")

    def variant_points(self) -> list[tuple[float, float]]:
        """``(compute share, metric)`` of every sub-network / exit a method evaluated, mean over seeds."""
        points: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for row in self.rows:
            for item in row.get("history") or []:
                for name, variant in (item.get("variants") or {}).items():
                    x = variant.get("compute_fraction", variant.get("embedding_fraction"))
                    y = variant.get(self.metric_name)
                    if x is not None and y is not None and math.isfinite(float(y)):
                        points[name].append((float(x), float(y)))
        return [
            (statistics.fmean(x for x, _ in p), statistics.fmean(y for _, y in p)) for p in points.values()
        ]

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
    "FLOPs/example",
    "state (train T)",
    "state (max test T)",
    "tokens/s",
    "examples/s",
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
                _fmt(e.cost("flops_per_example"), 3),
                _count(e.cost("state_size")),
                _count(e.cost("state_size_eval")),
                _fmt(e.cost("tokens_per_s"), 3),
                _fmt(e.cost("examples_per_s"), 3),
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
    from mixerlab.bench.store import ResultStore, check_store, display_url

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
        raise ConfigError("report", "store", display_url(store), "the store holds no runs yet")
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
    """Write ``report.html`` and the PNGs for the results in ``store``; returns the paths.

    A sweep over several tasks (``grid: {task.name: [...]}``) gets one section per task, each
    with its own leaderboard and plots (metrics of different tasks are never ranked together);
    its PNGs are named ``<task>-<plot>.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    rows = load_rows(store, sweep=sweep, task=task)
    check_group_by(rows, group_by)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r["task"] for r in rows))  # in the order the sweep ran them
    sections, pngs, total = [], {}, 0
    for name in tasks:
        mine = [r for r in rows if r["task"] == name]
        entries = leaderboard(mine, group_by)
        total += len(entries)
        figures = figures_for(mine, entries)
        images: dict[str, str] = {}
        for plot, (_, fig) in figures.items():
            data = _png(fig)
            key = plot if len(tasks) == 1 else f"{name}-{plot}"
            path = out / f"{key}.png"
            path.write_bytes(data)
            pngs[key] = str(path)
            images[plot] = base64.b64encode(data).decode()
        sections.append(_section(name, mine, entries, figures, images, heading=len(tasks) > 1))
    html_path = out / "report.html"
    html_path.write_text(_page(tasks, rows, sections), encoding="utf-8")
    log(f"report: {html_path} ({len(pngs)} plots, {total} entries, {len(tasks)} task(s))")
    return {"html": str(html_path), "pngs": pngs, "entries": total, "task": tasks[0], "tasks": tasks}


def _section(task: str, rows, entries: list[Entry], figures, images: dict[str, str], *, heading: bool) -> str:
    esc = html.escape
    options = (rows[-1].get("config") or {}).get("task_options", {})
    head = "".join(f"<th>{esc(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in table_rows(entries))
    imgs = "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{images[name]}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for name, (title, _) in figures.items()
    )
    title = f'<h2 id="{esc(task)}">Task <code>{esc(task)}</code></h2>' if heading else ""
    level = "h3" if heading else "h2"
    return f"""{title}
<p>{len(rows)} runs. Task options: <code>{esc(str(options))}</code>.
Metric: {esc(entries[0].metric_name)} ({"higher" if entries[0].higher_is_better else "lower"} is better).</p>
<{level}>Leaderboard</{level}>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<{level}>Plots</{level}>
{imgs}
"""


def _page(tasks: list[str], rows, sections: list[str]) -> str:
    esc = html.escape
    versions = rows[-1].get("versions") or {}
    sweeps = ", ".join(sorted({str(r["sweep"]) for r in rows}))
    name = tasks[0] if len(tasks) == 1 else f"{len(tasks)} tasks"
    links = (
        "<p>Tasks: " + ", ".join(f'<a href="#{esc(t)}">{esc(t)}</a>' for t in tasks) + "</p>"
        if len(tasks) > 1
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mixerlab report: {esc(name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} td:nth-child(2) {{ text-align: left; font-weight: 600; }}
figure {{ display: inline-block; margin: 1em; }} img {{ max-width: 100%; }}
code {{ background: #f6f6f6; padding: 1px 4px; }}
</style></head><body>
<h1>mixerlab report: <code>{esc(name)}</code></h1>
<p>Sweep(s): {esc(sweeps)}. {len(rows)} runs.</p>
{links}
<p>Per model and width, the learning rate with the best mean metric over seeds; ± is the standard
deviation over seeds. FLOPs: forward pass, counted by <code>torch.utils.flop_counter</code> (per
token, and per example: one image, table row or series window). Peak MB: one training step (on CPU
an estimate: weights, grads, AdamW moments and saved activations). tokens/s and examples/s:
training throughput of one worker (wall clock); train CPU s: CPU time of the run, the better guide
on a shared machine. Bytes: the file written by the run's transforms (when it has any).</p>
{"".join(sections)}
<p>Versions: <code>{esc(", ".join(f"{k}={v}" for k, v in versions.items()))}</code></p>
</body></html>
"""
