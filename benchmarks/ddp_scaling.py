"""Data-parallel training throughput: ``torchrun`` with 1 process against 2, measured in one run.

The same ``mixerlab train`` run (a character LM: ``char_lm`` length 64, model ``lm`` with GLA,
width 64, depth 2, global batch 32, ``--steps`` optimiser steps, one torch thread per process)
is launched through ``torchrun --nproc_per_node=N`` for N = 1 and 2, alternating, ``--repeats``
times each. Throughput is the global batch's examples per second of the training loop
(``steps x batch / train_seconds``: evaluation, start-up and the process group's set-up are not
counted). The table prints the median with min-max per N, and the 2 / 1 ratio of the medians.

On a CPU, two processes help when there are two cores free for them: the figure says how much
the gradient all-reduce (gloo) and a half-size batch per process cost against that.

    python benchmarks/ddp_scaling.py --steps 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BATCH = 32  # the global batch: each of N processes trains on BATCH / N examples per step
RUN = [
    "task.name=char_lm",
    "task.options.seq_len=64",
    "task.options.num_train=2048",
    "task.options.max_test_chars=2048",
    "model.dim=64",
    "model.depth=2",
    "model.mixer=gla",
    f"train.batch_size={BATCH}",
    "train.epochs=1",
    "train.target_metric=null",
    "train.eval_batch_size=256",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throughput(processes: int, steps: int, folder: Path) -> float:
    """Examples per second of the training loop of one ``torchrun`` launch with ``processes`` ranks."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    output = folder / f"result-{processes}.json"
    command = [
        torchrun,
        f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "mixerlab.cli.main",
        "train",
        "--no-store",
        "--no-progress",
        f"--output={output}",
        f"--max-steps={steps}",
        *(f"--set={assignment}" for assignment in RUN),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    result = json.loads(output.read_text())
    return result["steps"] * BATCH / result["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per launch")
    parser.add_argument("--repeats", type=int, default=3, help="launches per number of processes")
    args = parser.parse_args()
    figures: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for processes in figures:  # alternating, so a change of the machine's load hits both
                figures[processes].append(throughput(processes, args.steps, Path(folder)))
    setup = f"char_lm T=64, lm gla d=64 depth 2, global batch {BATCH}, {args.steps} steps"
    print(f"{setup}, {os.cpu_count()} CPUs")
    print(f"{'processes':>9}  {'examples/s (median)':>19}  {'min-max':>15}")
    for processes, values in figures.items():
        low, high = min(values), max(values)
        print(f"{processes:>9}  {statistics.median(values):>19.1f}  {low:>7.1f}-{high:<7.1f}")
    ratio = statistics.median(figures[2]) / statistics.median(figures[1])
    print(f"2 / 1 processes: {ratio:.2f}x")


if __name__ == "__main__":
    main()
