"""Wall time of one sweep on the Ray executor against the local process pool, in one run.

The same sweep (``mixerlab compare``'s, built from the same options as the CLI) runs twice into
two fresh stores: with ``executor="local"`` (a pool of ``--workers`` spawned processes) and with
``executor="ray"`` (a local Ray instance of ``--workers`` CPUs that ``compare`` starts and stops,
so its start-up is counted). No report is written. With ``--repeats`` the two alternate (local
first, then Ray first, ...) and each figure is the median with min-max. The table gives the wall
times, the ratio Ray / local of the medians, the training CPU seconds of all runs (summed over
the runs, median over repeats: the work itself, which the load of a shared machine does not
change), and whether both executors stored the same metrics for the same run keys.

    python benchmarks/ray_overhead.py --tiny --repeats 3
    python benchmarks/ray_overhead.py --seeds 0 --set train.max_steps=100
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mixerlab.bench.compare import build_sweep, compare
from mixerlab.bench.store import ResultStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the seconds-long sweep of `compare --tiny`")
    parser.add_argument("--seeds", help="comma-separated seeds (as `compare --seeds`)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], help="key=value")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    sweep = build_sweep(None, tiny=args.tiny, lists={"seeds": args.seeds}, assignments=args.assignments)
    quiet = lambda message: None  # noqa: E731
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    cpu: dict[str, list[float]] = {"local": [], "ray": []}
    metrics: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            order = ("local", "ray") if repeat % 2 == 0 else ("ray", "local")
            for executor in order:
                out = Path(root) / f"{executor}-{repeat}"
                started = time.perf_counter()
                summary = compare(
                    sweep, out_dir=out, workers=args.workers, report=False, log=quiet, executor=executor
                )
                walls[executor].append(time.perf_counter() - started)
                assert not summary.failed, summary.failed
                rows = ResultStore(out / "results.sqlite").rows()
                metrics.append({r["run_key"]: r["metric"] for r in rows})
                cpu[executor].append(sum(r["train_cpu_seconds"] for r in rows))
    median = {executor: statistics.median(times) for executor, times in walls.items()}
    print(f"sweep {sweep.name!r}: {len(metrics[0])} runs, {args.workers} workers, {args.repeats} repeat(s)")
    print("| executor | wall s (median) | min-max | ratio to local | train CPU s of the runs |")
    print("|---|---|---|---|---|")
    for executor, times in walls.items():
        print(
            f"| {executor} | {median[executor]:.1f} | {min(times):.1f}-{max(times):.1f} | "
            f"{median[executor] / median['local']:.2f} | {statistics.median(cpu[executor]):.1f} |"
        )
    print(f"same metrics for the same run keys: {all(m == metrics[0] for m in metrics)}")


if __name__ == "__main__":
    main()
