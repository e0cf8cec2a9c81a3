"""Run claims: measure each over its seeds, judge it, store one row per claim, plot it, write the report.

``run_claims`` writes, per claim, one row to the results store (``sweep="claims"``,
``task=<claim name>``, ``status="passed"/"failed"``, ``metric`` = the first threshold's figure,
``message`` = the one-sentence result, ``config`` = paper, claim, thresholds and settings,
``slices`` = every figure and the plotted series, ``history`` = the figures of each seed), one
PNG ``<out>/<claim>.png`` and, after every claim, ``<out>/report.html`` (PNGs embedded, so it
opens offline as one file). A claim that raises is recorded as failed with the error as its
message; the other claims still run.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import datetime as dt
import hashlib
import html
import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mixerlab.bench.claims.base import CLAIMS, Claim, ClaimResult, Threshold, mean_series, verdict
from mixerlab.errors import ConfigError

Log = Callable[[str], None]


def list_claims(*, quick: bool = False) -> list[Claim]:
    """Every registered claim in registration order, or only the ``--quick`` subset."""
    return [c for c in CLAIMS.values() if c.quick or not quick]


def select_claims(only: list[str] | None = None, *, quick: bool = False) -> list[Claim]:
    """The claims to run: those ``only`` names (unknown: ConfigError), else all or the quick ones."""
    if not only:
        return list_claims(quick=quick)
    unknown = [n for n in only if n not in CLAIMS]
    if unknown:
        raise ConfigError("claims", "only", ",".join(unknown), f"known claims are {', '.join(CLAIMS)}")
    chosen = [CLAIMS[n] for n in only]
    return [c for c in chosen if c.quick] if quick else chosen


def run_claim(
    claim: Claim, *, seeds: list[int], scale: float = 1.0, settings: dict[str, Any] | None = None
) -> ClaimResult:
    """Measure ``claim`` once per seed and judge the mean figures against its thresholds."""
    start = time.perf_counter()
    merged = {**claim.settings, **(settings or {})}
    measurements = [claim.measure(merged, seed, scale) for seed in seeds]
    result = verdict(claim, measurements, seeds, scale)
    result.seconds = time.perf_counter() - start
    return result


def failed_result(claim: Claim, seeds: list[int], scale: float, error: BaseException | str) -> ClaimResult:
    """The result of a claim whose experiment raised: every figure missing, so it fails."""
    result = verdict(claim, [], seeds, scale)
    result.error = error if isinstance(error, str) else _error_text(error)
    return result


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _run_in_worker(
    name: str, seeds: list[int], scale: float, settings: dict[str, Any] | None
) -> tuple[list[Any], float, str]:
    """One claim in a worker process: ``(measurements, seconds, error text)``.

    Only plain data crosses the process boundary (a claim's ``measure`` may be a lambda): the
    worker looks the claim up by name, the parent judges the measurements.
    """
    import mixerlab.bench.claims  # noqa: F401  (registers the claims in this process)

    try:
        result = run_claim(CLAIMS[name], seeds=seeds, scale=scale, settings=settings)
    except Exception as err:
        return [], 0.0, _error_text(err)
    return result.measurements, result.seconds, ""


def _results_in_order(
    claims: list[Claim],
    seeds: list[int],
    scale: float,
    settings: dict[str, dict[str, Any]],
    workers: int,
    log: Log | None = None,
) -> Iterator[ClaimResult]:
    """Each claim's result, in the order of ``claims``; with ``workers > 1`` claims run side by side.

    Every experiment trains on one thread, so on a 2-core machine two workers halve the wall
    time of the full set; the results are the same as in one process (fixed steps and seeds).
    """
    if workers <= 1 or len(claims) <= 1:
        for claim in claims:
            if log:
                log(f"claim {claim.name} ({claim.paper}, arXiv:{claim.arxiv}) ...")
            try:
                yield run_claim(claim, seeds=seeds, scale=scale, settings=settings.get(claim.name))
            except Exception as err:  # one broken experiment must not lose the others
                yield failed_result(claim, seeds, scale, err)
        return
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_in_worker, c.name, seeds, scale, settings.get(c.name)) for c in claims]
        for claim, future in zip(claims, futures):
            try:
                measurements, seconds, error = future.result()
            except Exception as err:  # a worker that died
                measurements, seconds, error = [], 0.0, _error_text(err)
            if error:
                yield failed_result(claim, seeds, scale, error)
                continue
            result = verdict(claim, measurements, seeds, scale)
            result.seconds = seconds
            yield result


def run_claims(
    claims: list[Claim],
    *,
    seeds: int = 1,
    scale: float = 1.0,
    out: str | Path | None = None,
    store: str | None = None,
    log: Log | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    workers: int = 1,
) -> list[ClaimResult]:
    """Run ``claims`` (each over seeds ``0 .. seeds-1``), storing rows and writing the report as they finish.

    ``settings`` overrides settings per claim name (the tests use it to shrink experiments).
    ``workers`` processes run claims side by side (one thread each); rows, plots and the report
    are still written in the order of ``claims``.
    """
    if seeds < 1:
        raise ConfigError("claims", "seeds", seeds, "expected a positive integer")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("claims", "workers", workers, "expected a positive integer")
    seed_list = list(range(seeds))
    results: list[ClaimResult] = []
    result_store = None
    if store is not None:
        from mixerlab.bench.store import ResultStore, check_store

        check_store(store, must_exist=False, owner="claims")
        result_store = ResultStore(store)
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        if log and workers > 1:
            log(f"running {len(claims)} claim(s) in {workers} worker processes")
        for result in _results_in_order(claims, seed_list, scale, settings or {}, workers, log):
            claim = result.claim
            results.append(result)
            if log:
                if workers > 1:
                    log(f"claim {claim.name} ({claim.paper}, arXiv:{claim.arxiv})")
                log(f"  {result.status.upper()} in {result.seconds:.0f}s: {result_text(result)}")
            if result_store is not None:
                result_store.write(store_row(result))
            if folder is not None:
                write_plot(result, folder / f"{claim.name}.png")
                write_report(results, folder / "report.html")
    finally:
        if result_store is not None:
            result_store.close()
    return results


def result_text(result: ClaimResult) -> str:
    return f"error: {result.error}" if result.error else result.message


def store_row(result: ClaimResult) -> dict[str, Any]:
    """One results-store row for a claim run (see the module docstring for what goes where)."""
    import torch

    import mixerlab

    claim = result.claim
    first: Threshold = claim.thresholds[0]
    created = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    config = {
        "claim": claim.name,
        "paper": claim.paper,
        "arxiv": claim.arxiv,
        "text": claim.text,
        "thresholds": [str(t) for t in claim.thresholds],
        "note": claim.note,
        "settings": claim.settings,
        "seeds": result.seeds,
        "scale": result.scale,
    }
    text = json.dumps(config, sort_keys=True, default=str)
    # Every run of a claim is its own row (a re-run is a new measurement, not a duplicate).
    key = hashlib.sha256(f"claims/{text}/{created.isoformat()}".encode()).hexdigest()[:32]
    labels = sorted({label for m in result.measurements for label in m.series})
    return {
        "run_key": key,
        "sweep": "claims",
        "task": claim.name,
        "kind": claim.kind,
        "model": " vs ".join(labels) or claim.name,
        "mixer": " vs ".join(labels) or claim.name,
        "seed": result.seeds[0] if result.seeds else None,
        "status": result.status,
        "metric_name": first.figure,
        "metric": _finite(result.figures.get(first.figure)),
        "higher_is_better": first.higher_is_better,
        "train_seconds": result.seconds,
        "steps": sum(m.steps for m in result.measurements),
        "device": "cpu",
        "message": result_text(result),
        "created_at": created,
        "config": json.loads(text),
        "axes": {"claim": claim.name},
        "slices": {
            "figures": {k: _finite(v) for k, v in result.figures.items()},
            "series": _jsonable(mean_series(result.measurements)),
            "extra": _jsonable([m.extra for m in result.measurements]),
        },
        "history": [{"seed": s, **_jsonable(m.figures)} for s, m in zip(result.seeds, result.measurements)],
        "versions": {"mixerlab": mixerlab.__version__, "torch": torch.__version__},
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: dict keys become strings, non-finite floats None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    return value


def write_plot(result: ClaimResult, path: Path) -> Path:
    """The claim's series (mean over seeds) as one PNG, thresholds in y units as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claim, spec = result.claim, result.claim.plot
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    series = mean_series(result.measurements)
    categories = sorted({x for pts in series.values() for x in pts}, key=_sort_key)
    for label, points in series.items():
        xs = sorted(points, key=_sort_key)
        ys = [points[x] for x in xs]
        pos = [categories.index(x) for x in xs] if spec.categorical_x else xs
        ax.plot(pos, ys, marker="o", label=label)
    if spec.categorical_x:
        ax.set_xticks(range(len(categories)), [str(c) for c in categories])
    for t in claim.thresholds:
        if t.in_plot:
            ax.axhline(t.value, linestyle="--", color="grey", linewidth=1)
            ax.annotate(str(t), (0.01, t.value), xycoords=("axes fraction", "data"), fontsize=7, color="grey")
    if spec.log_x and not spec.categorical_x:
        ax.set_xscale("log")
    if spec.log_y:
        ax.set_yscale("log")
    ax.set_xlabel(spec.x_label)
    ax.set_ylabel(spec.y_label)
    verdict_text = "PASSED" if result.passed else "FAILED"
    ax.set_title(f"{claim.name}: {verdict_text}\n{claim.paper[:70]} (arXiv:{claim.arxiv})", fontsize=9)
    if series:
        ax.legend(fontsize=7)
    else:
        ax.text(
            0.5, 0.5, result_text(result)[:80], ha="center", va="center", transform=ax.transAxes, fontsize=7
        )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _sort_key(x: Any) -> tuple[int, Any]:
    return (0, x) if isinstance(x, int | float) else (1, str(x))


def write_report(results: list[ClaimResult], path: Path) -> Path:
    """One self-contained HTML page: the table of claims and each claim's plot (embedded PNG)."""
    esc = html.escape
    passed = sum(r.passed for r in results)
    rows, sections = [], []
    for r in results:
        c = r.claim
        link = f'<a href="https://arxiv.org/abs/{esc(c.arxiv)}">arXiv:{esc(c.arxiv)}</a>'
        colour = "#1a7f37" if r.passed else "#cf222e"
        rows.append(
            f"<tr><td><a href='#{esc(c.name)}'>{esc(c.name)}</a></td><td>{esc(c.paper)} ({link})</td>"
            f"<td>{esc(r.measured_text)}</td><td>{esc(c.threshold_text)}</td>"
            f"<td style='color:{colour};font-weight:bold'>{r.status}</td><td>{r.seconds:.0f}</td></tr>"
        )
        png = path.parent / f"{c.name}.png"
        image = ""
        if png.exists():
            data = base64.b64encode(png.read_bytes()).decode()
            image = f"<img alt='{esc(c.name)}' src='data:image/png;base64,{data}'>"
        note = f"<p><b>Threshold note:</b> {esc(c.note)}</p>" if c.note else ""
        settings = esc(json.dumps(c.settings, default=str))
        sections.append(
            f"<h2 id='{esc(c.name)}'>{esc(c.name)}: <span style='color:{colour}'>{r.status}</span></h2>"
            f"<p><b>Claim.</b> {esc(c.text)}<br><b>Paper.</b> {esc(c.paper)} ({link})<br>"
            f"<b>Threshold</b> (fixed before the run): {esc(c.threshold_text)}<br>"
            f"<b>Result.</b> {esc(result_text(r))}</p>{note}{image}"
            f"<p><small>settings: {settings}; seeds {r.seeds}; scale {r.scale:g}</small></p>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>mixerlab claims</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style>"
        f"</head><body><h1>Papers' claims at toy scale: {passed} of {len(results)} hold</h1>"
        "<p>Each claim is a fixed-budget, seeded experiment on CPU-sized models; the threshold is "
        "fixed in code before the run. A claim that fails here is reported with its figures: toy "
        "scale is not the papers' scale.</p>"
        "<table><tr><th>claim</th><th>paper</th><th>measured</th><th>threshold</th><th>result</th>"
        f"<th>seconds</th></tr>{''.join(rows)}</table>{''.join(sections)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a page
    return path
