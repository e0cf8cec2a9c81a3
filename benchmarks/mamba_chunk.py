"""Mamba's loop-free ``parallel`` mode against its ``scan`` mode and ``mamba2``: speed and operator counts.

For each sequence length, one ``mamba`` layer in mode ``scan`` (blocked scan, a Python loop over
blocks and chunks), the same layer in mode ``parallel`` (no loop over time) and a ``mamba2`` layer
of the same ``dim`` are timed forward + backward in interleaved rounds (median of ``--rounds``
after one warm-up), and the aten operators one forward + backward dispatches are counted. All
three use ``backend="torch"`` (our PyTorch forms, never a kernel library). On a
GPU the operator count is what sets the time of small kernels (each is one launch), so it is the
proxy that travels from a CPU to a GPU; tokens/s are for the device the script ran on.

    OMP_NUM_THREADS=1 python benchmarks/mamba_chunk.py                       # CPU, ~2-4 min
    python benchmarks/mamba_chunk.py --device cuda --dtype bfloat16 --batch-size 4 --dim 1024
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mixerlab


class OperatorCount(TorchDispatchMode):
    """Counts every aten operator dispatched while active (forward and autograd backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(mixer: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        y, _ = mixer(x)
        y.float().square().mean().backward()

    return run


# our own PyTorch forms (backend "torch"): on CUDA, "auto" would hand both mamba modes to fla
LAYERS = {
    "mamba scan": ("mamba", "scan"),
    "mamba parallel": ("mamba", "parallel"),
    "mamba2": ("mamba2", None),
}


def _build(name: str, dim: int) -> torch.nn.Module:
    registry_name, mode = LAYERS[name]
    layer = mixerlab.create_token_mixer(registry_name, dim=dim, backend="torch")
    if mode is not None:
        layer.mode = mode
    return layer


def count_operators(name: str, T: int) -> int:
    """Aten operators of one forward + backward of layer ``name`` at length ``T``.

    Counted on a small CPU copy: the count depends on ``T`` and on the code path, not on ``dim``
    or the device, and a dispatch mode is sure to see the backward only on the calling thread.
    """
    layer = _build(name, dim=32)  # the smallest dim mamba2's head_dim=64 allows
    x = torch.randn(1, T, 32, requires_grad=True)
    with OperatorCount() as counter:
        _step(layer, x)()
    return counter.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", default="1024,4096")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(
        f"B={args.batch_size}, dim={args.dim}, {args.dtype}, {device}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; forward + backward, median of {args.rounds} interleaved rounds"
    )
    print("| T | layer | aten ops (fwd+bwd) | tokens/s | / mamba2 | / mamba scan |")
    print("|---|---|---|---|---|---|")
    for T in (int(t) for t in args.seq_lens.split(",")):
        ops = {name: count_operators(name, T) for name in LAYERS}
        torch.manual_seed(0)
        layers = {name: _build(name, args.dim).to(device, dtype) for name in LAYERS}
        x = torch.randn(args.batch_size, T, args.dim, device=device, dtype=dtype, requires_grad=True)
        times = {name: [] for name in layers}
        for _ in range(args.rounds + 1):  # the first round warms up and is dropped
            for name, layer in layers.items():
                run = _step(layer, x)
                _sync(device)
                start = time.perf_counter()
                run()
                _sync(device)
                times[name].append(time.perf_counter() - start)
        speed = {name: args.batch_size * T / statistics.median(t[1:]) for name, t in times.items()}
        for name in LAYERS:
            print(
                f"| {T} | {name} | {ops[name]} | {speed[name]:,.0f} | {speed[name] / speed['mamba2']:.2f} "
                f"| {speed[name] / speed['mamba scan']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
