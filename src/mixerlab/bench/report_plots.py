"""The report's plots (matplotlib, Agg backend): one function per figure, and which ones a run set gets.

Every plot takes the leaderboard's entries (:class:`mixerlab.bench.report.Entry`: one model and
width at its best learning rate) and a colour per label. Always drawn: metric vs state size (log
x), metric vs width, the spread across seeds. Drawn when the runs hold what they need: metric per
slice (a slice with several values), metric vs FLOPs per example (costs measured), metric vs
time to fit (when a baseline of another field is in the table), the
accuracy-size frontier (metric vs bytes on disk and vs inference tokens/s, from transforms'
facts), and metric vs compute of every sub-network or exit (from a method's variants).
A baseline of another field (no width, no FLOPs) is a dashed level line where it has no x value.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mixerlab.bench.report import Entry


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


def plot_cost(entries: list[Any], colors: dict[str, Any], x_of, x_label: str, title: str):
    """Metric against one cost per entry (log x); entries without that cost are level lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    dims = sorted({e.dim for e in entries})
    for e in entries:
        x = x_of(e)
        if not (isinstance(x, float) and math.isfinite(x) and x > 0):
            ax.axhline(_plot_value(e), color=colors[e.mixer], linestyle="--", alpha=0.7)
            continue
        ax.errorbar(
            x,
            _plot_value(e),
            yerr=e.std,
            fmt=MARKERS[dims.index(e.dim) % len(MARKERS)],
            color=colors[e.mixer],
            ms=8,
            capsize=3,
        )
    _frontier(ax, entries, x_of)
    for mixer in sorted(colors):
        ax.plot([], [], "o", color=colors[mixer], label=mixer)
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(_metric_label(entries))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    return fig


def _frontier(ax, entries: list[Any], x_of) -> None:
    """The Pareto front (no other point is both cheaper and better) as a grey step line."""
    points = [(x_of(e), _plot_value(e)) for e in entries]
    points = sorted((x, y) for x, y in points if isinstance(x, float) and math.isfinite(x) and x > 0)
    if len(points) < 2:
        return
    hib = entries[0].higher_is_better
    front, best = [], -math.inf if hib else math.inf
    for x, y in points:
        if (y > best) if hib else (y < best):
            front.append((x, y))
            best = y
    ax.step([x for x, _ in front], [y for _, y in front], where="post", color="gray", alpha=0.5, lw=1)


def plot_variants(entries: list[Any], colors: dict[str, Any]):
    """Every sub-network / exit / looped depth of a method: metric against the compute it keeps."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e in entries:
        points = sorted(e.variant_points())
        if not points:
            ax.axhline(_plot_value(e), color=colors[e.mixer], linestyle="--", alpha=0.7)
            continue
        xs, ys = [x for x, _ in points], [y for _, y in points]
        ax.plot(xs, ys, marker="o", color=colors[e.mixer], label=e.mixer)
    ax.set_xlabel("share of the full model's compute (or embedding width) each variant keeps")
    ax.set_ylabel(_metric_label(entries))
    ax.set_title("Every sub-network / exit vs its compute (dashed: runs without variants)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _finite_positive(values: list[float]) -> bool:
    return sum(1 for v in values if math.isfinite(v) and v > 0) >= 2


def figures_for(rows: list[dict[str, Any]], entries: list[Any]) -> dict[str, tuple[str, Any]]:
    """The figures this set of runs supports, by file name: ``{name: (title, figure)}``."""
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
    if _finite_positive([e.cost("flops_per_example") for e in entries]):
        figures["metric_vs_flops"] = (
            "Metric vs FLOPs per example",
            plot_cost(
                entries,
                colors,
                lambda e: e.cost("flops_per_example"),
                "forward FLOPs per example (log scale)",
                "Metric vs FLOPs per example (best lr, mean ± std; grey: the frontier)",
            ),
        )
    if any(e.dim == 0 for e in entries) and _finite_positive([e.cost("train_cpu_seconds") for e in entries]):
        # Against a baseline of another field (trees, linear models, statistical forecasters) the
        # honest cost is the time to fit, which neural and classical models both have.
        figures["metric_vs_fit_time"] = (
            "Metric vs time to fit",
            plot_cost(
                entries,
                colors,
                lambda e: e.cost("train_cpu_seconds"),
                "CPU seconds to fit (training, or a baseline's fit; log scale)",
                "Metric vs time to fit (best lr, mean ± std; grey: the frontier)",
            ),
        )
    if _finite_positive([e.fact("bytes") for e in entries]):
        figures["frontier_bytes"] = (
            "Accuracy-size frontier",
            plot_cost(
                entries,
                colors,
                lambda e: e.fact("bytes"),
                "model file bytes (packed by save_compressed; log scale)",
                "Metric vs bytes on disk after the transforms (grey: the frontier)",
            ),
        )
    if _finite_positive([e.fact("infer_tokens_per_s") for e in entries]):
        figures["frontier_speed"] = (
            "Metric vs inference speed",
            plot_cost(
                entries,
                colors,
                lambda e: 1.0 / e.fact("infer_tokens_per_s"),
                "inference seconds per token (1 / tokens/s, log scale; left is faster)",
                "Metric vs inference cost after the transforms (grey: the frontier)",
            ),
        )
    if any(e.variant_points() for e in entries):
        figures["variants"] = ("Metric vs compute of every variant", plot_variants(entries, colors))
    figures["seed_spread"] = ("Spread across seeds", plot_seeds(entries, colors))
    return figures
