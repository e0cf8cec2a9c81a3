"""Wall time of one sweep on the Ray executor against the local process pool, in one run.

The same sweep (``mixerlab compare``'s, built from the same options as the CLI) runs twice into
two fresh stores: with ``executor="local"`` (a pool of ``--workers`` spawned processes) and with
``executor="ray"`` (a local Ray instance of ``--workers`` CPUs that ``compare`` starts and stops,
so its start-up is counted). No report is written. The table gives each wall time, the ratio
Ray / local, and whether both stores hold the same metrics for the same run keys.

    python benchmarks/ray_overhead.py --tiny
    python benchmarks/ray_overhead.py --seeds 0 --set train.max_steps=100
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    sweep = build_sweep(None, tiny=args.tiny, lists={"seeds": args.seeds}, assignments=args.assignments)
    quiet = lambda message: None  # noqa: E731
    walls, metrics = {}, {}
    with tempfile.TemporaryDirectory() as root:
        for executor in ("local", "ray"):
            out = Path(root) / executor
            started = time.perf_counter()
            summary = compare(
                sweep, out_dir=out, workers=args.workers, report=False, log=quiet, executor=executor
            )
            walls[executor] = time.perf_counter() - started
            assert not summary.failed, summary.failed
            rows = ResultStore(out / "results.sqlite").rows()
            metrics[executor] = {r["run_key"]: r["metric"] for r in rows}
    runs = len(metrics["local"])
    print(f"sweep {sweep.name!r}: {runs} runs, {args.workers} workers")
    print("| executor | wall s | ratio to local |")
    print("|---|---|---|")
    for executor, wall in walls.items():
        print(f"| {executor} | {wall:.1f} | {wall / walls['local']:.2f} |")
    print(f"same metrics for the same run keys: {metrics['local'] == metrics['ray']}")


if __name__ == "__main__":
    main()
