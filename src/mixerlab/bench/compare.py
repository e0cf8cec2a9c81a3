"""Compare models side by side: a grid over any config field, on one task.

A sweep is a base run config plus axes: ``models`` (token-mixer specs), ``widths``, ``lrs`` and
``seeds`` are the usual four, and ``grid`` adds any other as ``{dotted.path: [values]}`` over the
task, model, method, transforms, objective and train fields (``{"model.mixing": ["noncausal",
"2d"], "method.name": ["standard", "gradient_noise"]}``). A dict value at a path that holds a dict
is merged into it, so ``{"model": [{"name": "tabular"}, {"name": "hist_gradient_boosting"}]}``
puts a baseline of another field (:mod:`mixerlab.bench.baselines`) in the same table; a baseline
run keeps only its model's name and options and its seed.

Every run trains in a worker process (``ProcessPoolExecutor``, spawn context, one thread each when
there are several workers), or as a Ray task (``executor="ray"``,
:mod:`mixerlab.bench.ray_executor`), and its result is written to the results store as soon as it
finishes. A run already in the store is skipped, so re-running an interrupted sweep only does
what is missing; a run killed mid-way resumes from its last per-epoch checkpoint.

Interrupts: workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group) and die
with the parent (Linux ``PR_SET_PDEATHSIG``), so only the parent decides. The first Ctrl-C sets
an event the workers poll before every step: each running run stops, keeping its checkpoint, no
new run starts, and :func:`compare` returns with ``interrupted`` set. The second Ctrl-C kills the
workers and raises :class:`KeyboardInterrupt` at once.

Fairness: every run sees the same data (the task's data seed), the same budget (epochs, batch
size, schedule), and the same small learning-rate grid; the report takes the best learning rate
per model and shows the spread over seeds. A model spec may name its own learning rates,
``{"name": "gla", "lr": 1e-2}`` (or a list): they replace ``lrs`` for that model only, for mixers
whose best rate lies outside the shared grid; ``--lrs`` on the command line replaces them all.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixerlab.bench.compare_plan import (  # noqa: F401  (the public names of a comparison, in one place)
    Log,
    PlannedRun,
    SweepConfig,
    axis_labels,
    build_sweep,
    load_sweep,
    mixer_labels,
    model_lrs,
    plan,
    preflight,
    resolve_models,
    split_list,
)
from mixerlab.bench.compare_run import run_one  # noqa: F401
from mixerlab.bench.executors import (  # noqa: F401
    EXECUTORS,
    STOP_GRACE_SECONDS,
    Executor,
    _run_safely,
    executor_for,
)
from mixerlab.errors import check
from mixerlab.train.config import to_dict


@dataclass
class CompareSummary:
    store_url: str
    planned: int
    skipped_done: int
    finished: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: dict[str, Any] | None = None
    # Stopped by Ctrl-C: finished runs are in the store, the others keep their checkpoints.
    interrupted: bool = False
    sweep: str = ""


def compare(
    sweep: SweepConfig | dict[str, Any],
    *,
    out_dir: str | os.PathLike = "mixerlab-runs",
    store: str | None = None,
    workers: int = 2,
    report: bool = True,
    log: Log = print,
    executor: str = "local",
    ray_address: str | None = None,
) -> CompareSummary:
    """Run (the missing runs of) ``sweep``, writing each result to the store; then the report.

    ``executor`` runs the runs: ``local`` (this process, or a pool of ``workers`` processes) or
    ``ray`` (a Ray task each, on the cluster at ``ray_address`` or ``RAY_ADDRESS``, else on a
    local Ray instance of ``workers`` CPUs). Either way the rows are written here, as each run
    finishes. Everything is checked before anything is created or run: the sweep, every model
    at every width, the store, the executor. Ctrl-C: see the module docstring.
    """
    from mixerlab.bench.store import ResultStore, check_store, display_url

    run_all = executor_for(executor, ray_address)
    sweep = load_sweep(sweep)
    check(
        isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
        "compare",
        "workers",
        workers,
        "expected an integer >= 1",
    )
    out = Path(out_dir)
    store_path = store or out / "results.sqlite"
    check_store(store_path, must_exist=False, owner="compare")
    started = time.perf_counter()
    runs, notes = plan(sweep, log)
    runs, more_notes = preflight(runs, log)
    out.mkdir(parents=True, exist_ok=True)
    results = ResultStore(store_path)
    done = results.finished_keys()
    todo = [r for r in runs if r.key not in done]
    summary = CompareSummary(results.url, len(runs), len(runs) - len(todo), sweep=sweep.name)
    summary.notes = notes + more_notes
    names = ", ".join(dict.fromkeys(r.config.task.name for r in runs)) or sweep.task.name
    log(
        f"sweep {sweep.name!r}: {len(runs)} runs on {names}, {summary.skipped_done} already in "
        f"{display_url(results.url)}, {len(todo)} to run with {workers} worker(s)"
        + (" on Ray" if executor == "ray" else "")
    )
    checkpoint_dir = str(out / "checkpoints")

    def record(run: PlannedRun, status: str, row: dict | None, error: str) -> None:
        if status == "interrupted":
            return
        if status == "ok" and row is not None:
            results.write(row)
            Path(checkpoint_dir, f"{run.key}.pt").unlink(missing_ok=True)
            summary.finished.append(run.key)
            metric = "n/a" if row["metric"] is None else f"{row['metric']:.4f}"
            where = "" if row["dim"] is None else f" dim={row['dim']} lr={row['lr']:g}"
            log(
                f"[{len(summary.finished) + len(summary.failed)}/{len(todo)}] {run.label}{where} "
                f"seed={row['seed']}: {row['metric_name']}={metric} ({row['status']}, "
                f"{row['train_seconds']:.0f}s)"
            )
        else:
            summary.failed.append((run.key, error))
            log(f"run {run.label} dim={run.config.model.dim} lr={run.config.train.lr:g} failed:\n{error}")

    args = [(to_dict(r.config), r.label, sweep.name, checkpoint_dir, r.axes) for r in todo]
    try:
        summary.interrupted = run_all(todo, args, workers, record) if todo else False
    finally:
        summary.seconds = time.perf_counter() - started
        results.close()
    if report and not summary.interrupted and (summary.finished or summary.skipped_done):
        from mixerlab.bench.report import write_report

        summary.report = write_report(results.url, out / "report", sweep=sweep.name, log=log)
        if sweep.train.loggers:
            _log_report(sweep, summary.report, out)
    return summary


def _log_report(sweep: SweepConfig, report: dict[str, Any], out: Path) -> None:
    """The report's plots to the sweep's loggers, as one run named ``report`` in the sweep's group."""
    from mixerlab.train.loggers import open_loggers

    loggers = open_loggers(sweep.train.loggers, run_name="report", group=sweep.name, root=out)
    try:
        loggers.log_config(to_dict(sweep))
        loggers.log_images(report["pngs"])
    finally:
        loggers.close()


def compare_command(
    path: str | None,
    *,
    out: str,
    store: str | None,
    workers: int,
    lists: dict[str, str | None],
    assignments: list[str],
    tiny: bool,
    report: bool,
    log: Log = print,
    executor: str = "local",
    ray_address: str | None = None,
) -> CompareSummary:
    """What ``mixerlab compare`` does: build the sweep, run it, print a summary."""
    from mixerlab.bench.store import display_url

    sweep = build_sweep(path, lists=lists, assignments=assignments, tiny=tiny)
    summary = compare(
        sweep,
        out_dir=out,
        store=store,
        workers=workers,
        report=report,
        log=log,
        executor=executor,
        ray_address=ray_address,
    )
    if summary.interrupted:
        return summary
    log(
        f"done in {summary.seconds:.0f}s: {len(summary.finished)} run(s) finished, {summary.skipped_done} "
        f"already in the store, {len(summary.failed)} failed; store: {display_url(summary.store_url)}"
    )
    return summary
