"""A token mixer against its installed peers, the two timed in turn: forward + backward ratio.

``mixerlab speed`` times a mixer's rows first and its peers minutes later; on a shared machine the
load changes in between (a matmul peak of 43 GFLOP/s at one mixer, 170 at the next was seen) and
a ratio can be off by several times. Here, in one process, each repeat runs one step of ours and
then one of the peer on the same ``[B, L, dim]`` input; after a warm-up step of each, the best of
``--repeats`` of each is kept, so both sides see the same machine. Ours runs at its defaults, or
under the peer's ``same_settings`` with ``--same``.

    OMP_NUM_THREADS=1 python benchmarks/peer_interleaved.py --mixers fox,mla --lengths 256,1024
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch

import mixerlab
from mixerlab.bench.peers import peers_for
from mixerlab.registry import TOKEN_MIXERS


def step_seconds(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Wall time of one forward + backward."""
    inp = x.clone().requires_grad_()
    start = time.perf_counter()
    run(inp).square().mean().backward()
    return time.perf_counter() - start


def ours_output(mixer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return mixer(x)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", required=True, help="comma-separated mixers that have peers")
    parser.add_argument("--lengths", default="256,1024")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--same", action="store_true", help="ours under each peer's same_settings")
    args = parser.parse_args()
    print("| mixer | peer | L | ours ms | peer ms | ours / peer speed |")
    print("|---|---|---|---|---|---|")
    for name in args.mixers.split(","):
        for peer in peers_for(name):
            torch.manual_seed(0)
            settings = peer.same_settings if args.same else {}
            if "num_heads" in TOKEN_MIXERS.entry(name).parameters():
                settings = {"num_heads": args.num_heads, **settings}
            ours = mixerlab.create_token_mixer(name, dim=args.dim, **settings)
            module = peer.build(args.dim, args.num_heads)
            for seq_len in (int(n) for n in args.lengths.split(",")):
                x = torch.randn(args.batch_size, seq_len, args.dim)
                runs = {"ours": partial(ours_output, ours), "peer": partial(peer.call, module)}
                best = {side: float("inf") for side in runs}
                for repeat in range(args.repeats + 1):  # the first, a warm-up, is not counted
                    for side, run in runs.items():
                        seconds = step_seconds(run, x)
                        best[side] = best[side] if repeat == 0 else min(best[side], seconds)
                ratio = best["peer"] / best["ours"]
                print(
                    f"| {name} | {peer.name} | {seq_len} | {best['ours'] * 1e3:.0f} | "
                    f"{best['peer'] * 1e3:.0f} | {ratio:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
