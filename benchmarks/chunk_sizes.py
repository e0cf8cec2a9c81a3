"""Chunk sizes by measurement: every chunked mixer's forward+backward throughput over chunk sizes.

Each figure is relative to the mixer's default chunk size, timed in the same interleaved rounds
(see ``mixerlab.bench.chunk_sizes``). B=4, dim=256, 4 heads, L=4096, float32 by default.

    python benchmarks/chunk_sizes.py                                  # ~5-10 min on 2 CPU cores
    python benchmarks/chunk_sizes.py --mixers gla,deltanet --rounds 1 # quick look
    python benchmarks/chunk_sizes.py --benchmarks-md BENCHMARKS.md    # record the table
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import torch

from mixerlab.bench.chunk_sizes import ChunkSweep, chunk_table, sweep_chunk_sizes
from mixerlab.bench.measure import machine_info, tune_allocator
from mixerlab.bench.speed_report import render, replace_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", help="comma-separated (default: every mixer with chunk_size)")
    parser.add_argument("--sizes", default="16,32,64,128,256")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--benchmarks-md", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()
    cfg = ChunkSweep(
        mixers=args.mixers.split(",") if args.mixers else None,
        sizes=[int(s) for s in args.sizes.split(",")],
        seq_len=args.seq_len,
        rounds=args.rounds,
        dtype=args.dtype,
    )
    rows = sweep_chunk_sizes(cfg)
    sizes = sorted({r["chunk_size"] for r in rows})
    table = render(chunk_table(rows, sizes), markdown=True)
    print(table)
    if args.benchmarks_md:
        m = machine_info()
        command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        body = "\n".join(
            [
                f"Command: `{command}`  ",
                f"Machine: {m['cpu']}, {m['threads']} threads ({m['cpu_capability']}), torch {m['torch']}  ",
                f"Date: {datetime.date.today().isoformat()}; B={cfg.batch_size}, dim={cfg.dim}, "
                f"num_heads={cfg.num_heads}, L={cfg.seq_len}, {cfg.dtype}, medians of {cfg.rounds} "
                "interleaved rounds after one warm-up round",
                "",
                table,
            ]
        )
        replace_section(args.benchmarks_md, "chunk-sizes", body)
        print(f"updated {args.benchmarks_md}")


if __name__ == "__main__":
    main()
