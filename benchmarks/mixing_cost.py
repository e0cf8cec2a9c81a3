"""Cost of the non-causal and packed forms of token mixers against their causal form, in one run.

For each mixer: forward + backward time at ``[B, T, D]`` for the causal form, the non-causal form
(native, or the bidirectional wrapper) and a packed batch of the same tokens (``cu_seqlens``,
documents of mixed lengths in one row). Ratios are against the causal form measured in the same
run; each figure is the median of ``--repeats`` timings after a warm-up.

    python benchmarks/mixing_cost.py --mixers attention,gla,mamba,mingru,hyena,deltanet
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mixerlab
from mixerlab.layers.mixing import make_mixer


def timed(fn, repeats: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step(mixer, x, packed=None):
    def run():
        x.grad = None
        y = mixer.forward_packed(x, packed)[0] if packed is not None else mixer(x)[0]
        y.sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", default="attention,linear_attention,gla,mamba,mingru,hyena,deltanet")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    B, T, D = args.batch, args.length, args.dim
    # The packed row holds the same B*T tokens as documents of mixed lengths.
    lengths = [T // 2, T // 4, T // 8, T - T // 2 - T // 4 - T // 8] * B
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, {where}, {args.dtype}, B={B} T={T} D={D}, fwd+bwd")
    header = f"{'mixer':<18}{'causal ms':>10}{'non-causal':>12}{'ratio':>7}{'packed':>10}{'ratio':>7}"
    print(header + "  forms")
    for name in args.mixers.split(","):
        causal = mixerlab.create_token_mixer(name, dim=D).to(device, dtype)
        noncausal = make_mixer(name, dim=D, mixing="noncausal").to(device, dtype)
        x = torch.randn(B, T, D, device=device, dtype=dtype, requires_grad=True)
        row = torch.randn(1, B * T, D, device=device, dtype=dtype, requires_grad=True)
        t_c = timed(step(causal, x), args.repeats, device)
        t_n = timed(step(noncausal, x), args.repeats, device)
        t_p = timed(step(causal, row, cu.to(device)), args.repeats, device)
        form = "native" if type(causal).noncausal == "native" else "bidirectional wrapper"
        print(
            f"{name:<18}{t_c * 1e3:>10.1f}{t_n * 1e3:>12.1f}{t_n / t_c:>7.2f}{t_p * 1e3:>10.1f}"
            f"{t_p / t_c:>7.2f}  {form}; packed {type(causal).packed}"
        )


if __name__ == "__main__":
    main()
