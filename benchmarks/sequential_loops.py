"""Step loops of the strictly sequential mixers (sLSTM, SRWM): autograd loop vs fused loop.

Both have no parallel form, so on a GPU a training step costs kernel launches per token. For each
op this measures, in the same run, the previous form (a vectorised step loop differentiated by
autograd, kept here as the baseline) and the fused loop of :mod:`mixerlab.ops` (preallocated
buffers, one batched matmul per step, a hand-written backward): forward + backward tokens/s
(best of ``--repeats``) and ATen kernels dispatched per step (:mod:`mixerlab.bench.op_count`;
on a GPU each is a launch). Shapes are those of the layers at ``--dim`` / ``--num-heads``.

    OMP_NUM_THREADS=1 python benchmarks/sequential_loops.py --seq-len 512 --dim 256
    python benchmarks/sequential_loops.py --device cuda --dtype bfloat16 --batch-size 4
    OMP_NUM_THREADS=1 python benchmarks/sequential_loops.py --memory --seq-len 4096
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.bench.measure import peak_memory_mb
from mixerlab.bench.op_count import ops_per_step
from mixerlab.ops.slstm import slstm_sequential
from mixerlab.ops.srwm import srwm_recurrent


def slstm_autograd_loop(wx: Tensor, R: Tensor) -> Tensor:
    """Baseline: the sLSTM step loop as mixerlab ran it before, differentiated by autograd."""
    B, T, H, _, Dh = wx.shape
    c, n, m, h = (wx.new_zeros(B, H, Dh) for _ in range(4))
    R_flat = rearrange(R, "h j g i -> h j (g i)")
    ys = []
    for wx_t in wx.unbind(1):
        rec = torch.bmm(rearrange(h, "b h d -> h b d"), R_flat)
        pre = wx_t + rearrange(rec, "h b (g d) -> b h g d", g=4)
        i_t, f_t, z_t, o_t = pre.unbind(2)
        log_f = F.logsigmoid(f_t)
        m_new = torch.maximum(log_f + m, i_t)
        i_p, f_p = torch.exp(i_t - m_new), torch.exp(log_f + m - m_new)
        c = f_p * c + i_p * torch.tanh(z_t)
        n = f_p * n + i_p
        h, m = torch.sigmoid(o_t) * c / n, m_new
        ys.append(h)
    return torch.stack(ys, dim=1)


def srwm_autograd_loop(x: Tensor, weight: Tensor) -> Tensor:
    """Baseline: the SRWM step loop as mixerlab ran it before, differentiated by autograd."""
    K = x.shape[-1]
    ys = []
    for t in range(x.shape[1]):
        out = (weight @ torch.softmax(x[:, t], dim=-1)[..., None])[..., 0]
        y, q, k, b = out.split([K, K, K, 4], dim=-1)
        phi_qk = torch.softmax(torch.stack([q, k], dim=-1), dim=-2)
        v_pair = weight @ phi_qk
        lr = torch.sigmoid(b).repeat_interleave(torch.tensor([K, K, K, 4], device=x.device), dim=-1)
        delta = lr * (v_pair[..., 0] - v_pair[..., 1])
        weight = weight + delta[..., None] * phi_qk[..., 1][..., None, :]
        ys.append(y)
    return torch.stack(ys, dim=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd_seconds(run: Callable[[], Tensor], params: list[Tensor], device, repeats: int) -> float:
    """Best wall time of ``repeats`` forward + backward passes (after one warm-up)."""
    best = float("inf")
    for i in range(repeats + 1):
        for p in params:
            p.grad = None
        _sync(device)
        start = time.perf_counter()
        run().float().square().mean().backward()
        _sync(device)
        if i:  # the first pass warms up allocator and kernels
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    parser.add_argument("--memory", action="store_true", help="peak memory of one fused fwd+bwd (CPU RSS)")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    B, T, H = args.batch_size, args.seq_len, args.num_heads
    K = args.dim // H
    gen = torch.Generator().manual_seed(0)

    def make(*shape: int, scale: float = 1.0) -> Tensor:
        t = torch.randn(*shape, generator=gen) * scale
        return t.to(device=device, dtype=dtype).requires_grad_()

    # sLSTM: gate inputs and block-diagonal recurrent weights; SRWM: head inputs and fast weights
    wx, R = make(B, T, H, 4, K), make(H, K, 4, K, scale=0.5 / K**0.5)
    x, W = make(B, T, H, K), make(B, H, 3 * K + 4, K, scale=K**-0.5)
    cases = {
        "slstm": (
            [wx, R],
            lambda t: slstm_autograd_loop(wx[:, :t], R),
            lambda t: slstm_sequential(wx[:, :t], R)[0],
        ),
        "srwm": ([x, W], lambda t: srwm_autograd_loop(x[:, :t], W), lambda t: srwm_recurrent(x[:, :t], W)[0]),
    }
    if args.memory:  # resident-memory growth of one forward + backward of each fused loop
        for name, (_, _, new) in cases.items():
            mb = peak_memory_mb(lambda new=new: new(T).float().square().mean().backward())
            print(
                f"{name}: T={T}, B={B}, dim={args.dim}, {args.dtype}: peak {mb:,.0f} MB fwd+bwd", flush=True
            )
        return
    print(
        f"B={B}, T={T}, dim={args.dim}, {H} heads of {K}, {args.dtype} on {device}, "
        f"{torch.get_num_threads()} threads, forward + backward, best of {args.repeats}"
    )
    print("| op | loop | kernels/step fwd | kernels/step fwd+bwd | tokens/s | fused / autograd |")
    print("|---|---|---|---|---|---|")
    for name, (params, old, new) in cases.items():

        def per_step(fn, backward: bool):
            def run(t: int) -> None:
                with torch.set_grad_enabled(backward):
                    y = fn(t)
                    if backward:
                        y.float().sum().backward()

            return ops_per_step(run).kernels

        speed = {}
        for label, fn in (("autograd", old), ("fused", new), ("autograd", old)):  # old timed twice
            seconds = fwd_bwd_seconds(lambda fn=fn: fn(T), params, device, args.repeats)
            speed[label] = max(speed.get(label, 0.0), B * T / seconds)
        for label, fn in (("autograd", old), ("fused", new)):
            ratio = f"{speed['fused'] / speed['autograd']:.2f}x" if label == "fused" else ""
            fwd, both = per_step(fn, False), per_step(fn, True)
            print(f"| {name} | {label} | {fwd:g} | {both:g} | {speed[label]:,.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
