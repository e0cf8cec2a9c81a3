"""A token mixer's fast form against its own per-step reference: forward + backward time ratio.

For each mixer asked for, one forward + backward of ``[B, L, dim]`` random input through the
default (fast) mode and through ``mode = "reference"``, best of ``--repeats`` (the fast form is
timed again after the reference, so a load change during the slow run shows in neither side
alone). Only the ratio is meant to travel between machines.

    OMP_NUM_THREADS=1 python benchmarks/reference_ratio.py --mixers lizard,mesanet --seq-len 4096
"""

from __future__ import annotations

import argparse
import time

import torch

import mixerlab


def best_seconds(mixer: torch.nn.Module, x: torch.Tensor, mode: str, repeats: int) -> float:
    """Best wall time of ``repeats`` forward + backward passes in ``mode``."""
    mixer.mode = mode
    best = float("inf")
    for _ in range(repeats):
        inp = x.clone().requires_grad_()
        start = time.perf_counter()
        y, _ = mixer(inp)
        y.square().mean().backward()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", required=True, help="comma-separated registry names")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(
        f"B={args.batch_size}, L={args.seq_len}, dim={args.dim}, {args.num_heads} heads, float32, "
        f"{threads} threads, forward + backward, best of {args.repeats}"
    )
    print("| mixer | fast mode | fast s | reference s | reference / fast |")
    print("|---|---|---|---|---|")
    for name in (n.strip() for n in args.mixers.split(",") if n.strip()):
        torch.manual_seed(0)
        mixer = mixerlab.create_token_mixer(name, dim=args.dim, num_heads=args.num_heads)
        x = torch.randn(args.batch_size, args.seq_len, args.dim)
        fast_mode = mixer.modes[0]
        fast = best_seconds(mixer, x, fast_mode, args.repeats + 1)
        reference = best_seconds(mixer, x, "reference", args.repeats)
        fast = min(fast, best_seconds(mixer, x, fast_mode, args.repeats))
        row = f"| {name} | {fast_mode} | {fast:.3f} | {reference:.2f} | {reference / fast:.1f}x |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
