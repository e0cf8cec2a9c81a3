"""What ``torch.compile`` (Inductor) gains on the chunked token mixers: eager vs compiled, same run.

For each mixer whose default mode is ``chunk`` (or the ones named), one forward+backward step at
B=1, T=1024, dim=256, 4 heads, float32 is timed eagerly and through ``torch.compile`` in
interleaved rounds (eager and compiled alternate, so a load change hits both alike); the table
gives tokens/s for both, their ratio, and the compile time (the first compiled step, cold Dynamo
cache, Inductor's on-disk cache as found) separately.

    python benchmarks/compile_gain.py                          # every chunked mixer (CPU: many minutes)
    python benchmarks/compile_gain.py --mixers gla,deltanet    # a quick look
    python benchmarks/compile_gain.py --device cuda            # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import mixerlab
from mixerlab.registry import TOKEN_MIXERS


def chunked_mixers() -> list[str]:
    """Registered mixers whose default (first) mode is the chunked form."""
    return [e.name for e in TOKEN_MIXERS if getattr(e.builder, "modes", ("",))[0] == "chunk"]


def build(name: str, dim: int, num_heads: int, seq_len: int, device: str) -> nn.Module:
    params = TOKEN_MIXERS.entry(name).parameters()
    kwargs: dict = {"dim": dim}
    if "num_heads" in params:
        kwargs["num_heads"] = num_heads
    if "max_len" in params:
        kwargs["max_len"] = seq_len
    return mixerlab.create_token_mixer(name, **kwargs).to(device)


def step_fn(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, device: str) -> Callable[[], float]:
    """One timed forward+backward; returns its seconds (synchronised on a GPU)."""

    def step() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        y, _ = module(x)
        y.backward(grad)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        for p in module.parameters():
            p.grad = None
        x.grad = None
        return seconds

    return step


def measure(name: str, args: argparse.Namespace) -> dict:
    torch._dynamo.reset()  # every mixer shares forward's code object: a fresh cache per mixer
    torch.manual_seed(0)
    mixer = build(name, args.dim, args.num_heads, args.seq_len, args.device)
    x = torch.randn(args.batch_size, args.seq_len, args.dim, device=args.device, requires_grad=True)
    grad = torch.randn_like(x)
    eager = step_fn(mixer, x, grad, args.device)
    compiled = step_fn(torch.compile(mixer, dynamic=False), x, grad, args.device)
    eager()  # warm-up
    compile_s = compiled()  # the first compiled step: tracing, code generation, one run
    compiled()
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for label, fn in (("eager", eager), ("compiled", compiled)):
            times[label].append(min(fn() for _ in range(args.repeats)))
    tokens = args.batch_size * args.seq_len
    eager_tps = tokens / statistics.median(times["eager"])
    compiled_tps = tokens / statistics.median(times["compiled"])
    return {
        "mixer": name,
        "fullgraph": TOKEN_MIXERS.entry(name).builder.compile_fullgraph,
        "eager": eager_tps,
        "compiled": compiled_tps,
        "ratio": compiled_tps / eager_tps,
        "compile_s": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", help="comma-separated (default: every mixer whose default mode is chunk)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="steps per round; the fastest counts")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.mixers.split(",") if args.mixers else chunked_mixers()
    print(
        f"B={args.batch_size} T={args.seq_len} dim={args.dim} heads={args.num_heads} float32 "
        f"{args.device}, fwd+bwd, median of {args.rounds} interleaved rounds; torch {torch.__version__}"
    )
    print("| mixer | fullgraph | eager tok/s | compiled tok/s | compiled / eager | compile s |")
    print("|---|---|---:|---:|---:|---:|")
    for name in names:
        try:
            r = measure(name, args)
        except Exception as exc:  # one mixer failing to compile must not hide the others' figures
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            print(f"| {name} | - | - | - | failed: {why} | - |")
            continue
        print(
            f"| {r['mixer']} | {'yes' if r['fullgraph'] else 'no'} | {r['eager']:,.0f} "
            f"| {r['compiled']:,.0f} | {r['ratio']:.2f}x | {r['compile_s']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
