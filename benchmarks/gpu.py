"""Training throughput of every token mixer on one GPU, beside the installed peers and the GPU's
bfloat16 matmul rate, all measured in the same run.

Each mixer and each peer is one layer ``[B, T, D] -> [B, T, D]`` with its own projections, timed
for forward + backward in bfloat16 at ``B=4, T=4096, D=1024`` and 8 heads (the sizes of the
comparisons in BENCHMARKS.md). Peers: plain ``scaled_dot_product_attention`` with the same
projections as ``attention``; flash-linear-attention's layers (``fla.layers``) for the operators
it implements; ``mamba_ssm``'s ``Mamba2`` when installed. A mixer with ``backend`` options (see
``mixerlab.ops.backends``) is measured as built (``auto``) and again with ``backend="torch"``.
The yardstick is a ``8192^3`` bfloat16 matmul (TFLOP/s), so figures from different GPUs compare.

A sequential mixer whose step would take long at T=4096 is measured at a shorter length (its
tokens/s hardly depend on T; the row says so), and the whole run keeps to ``--budget`` seconds:
what is left when it runs out is listed as not measured. Writes a Markdown section (``--out``)
and, optionally, the rows as JSON.

    python benchmarks/gpu.py --device cuda --out gpu.md --json gpu.json
    python benchmarks/gpu.py --device cpu --tiny        # the script's own check, in seconds
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import mixerlab
from mixerlab.registry import TOKEN_MIXERS

# Measured first, so that a budget cut falls on the long tail: the mixers with peers.
FIRST = ("attention", "gla", "deltanet", "gated_deltanet", "retention", "linear_attention", "based")
FIRST += ("hgrn", "hgrn2", "rwkv6", "mamba", "mamba2")
FIRST += ("kda", "rwkv7", "comba", "gated_deltaproduct", "gsa", "log_linear", "mesanet")
FIRST += ("mlstm", "mingru", "h3", "lstm", "slstm", "srwm")


@dataclass
class Sizes:
    batch: int = 4
    seq_len: int = 4096
    dim: int = 1024
    heads: int = 8
    short_len: int = 512  # where a slow sequential mixer is measured instead
    max_step_s: float = 4.0  # estimated seconds per step above which the short length is used


TINY = Sizes(batch=2, seq_len=64, dim=32, heads=2, short_len=16, max_step_s=2.0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, n: int) -> float:
    """bfloat16 ``n x n @ n x n`` rate in TFLOP/s (median of 5 after a warm-up)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(6):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e12


def time_step(step: Callable[[], None], device: torch.device, repeats: int = 3, max_s: float = 3.0) -> float:
    """Median seconds of ``step`` after one warm-up call (Triton autotuning, cuDNN plans)."""
    step()
    synchronize(device)
    times: list[float] = []
    while len(times) < repeats and sum(times) < max_s:
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def fwd_bwd(module: nn.Module, call: Callable[[nn.Module, Tensor], Tensor], x: Tensor, grad: Tensor):
    def step() -> None:
        call(module, x).backward(grad)
        for p in module.parameters():
            p.grad = None
        x.grad = None

    return step


def measure(
    module: nn.Module, call: Callable[[nn.Module, Tensor], Tensor], sizes: Sizes, device: torch.device
) -> dict[str, Any]:
    """Tokens/s of forward + backward and peak memory; a slow layer at the short length."""
    g = torch.Generator().manual_seed(0)

    def inputs(seq_len: int) -> tuple[Tensor, Tensor]:
        shape = (sizes.batch, seq_len, sizes.dim)
        x = torch.randn(shape, generator=g).to(device, torch.bfloat16).requires_grad_()
        return x, torch.randn(shape, generator=g).to(device, torch.bfloat16)

    seq_len = sizes.seq_len
    if getattr(module, "num_tokens", None) is None:  # an image mixer reads its whole grid only
        # A probe at the short length says whether the full length fits the per-step bound.
        x, grad = inputs(sizes.short_len)
        start = time.perf_counter()
        fwd_bwd(module, call, x, grad)()
        synchronize(device)
        probe = time.perf_counter() - start
        if probe * sizes.seq_len / sizes.short_len > sizes.max_step_s:
            seq_len = sizes.short_len
    x, grad = inputs(seq_len)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_step(fwd_bwd(module, call, x, grad), device)
    row: dict[str, Any] = {"tok_s": sizes.batch * seq_len / seconds, "seq_len": seq_len}
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def mixer_call(module: nn.Module, x: Tensor) -> Tensor:
    return module(x)[0]


def first_output(module: nn.Module, x: Tensor) -> Tensor:
    out = module(x)
    return out[0] if isinstance(out, tuple) else out


def build_mixer(name: str, sizes: Sizes, **options: Any) -> nn.Module:
    params = TOKEN_MIXERS.entry(name).parameters()
    kwargs: dict[str, Any] = {"dim": sizes.dim, **options}
    if "num_heads" in params:
        kwargs["num_heads"] = sizes.heads
    if "max_len" in params:  # whole-sequence filters (hyena, pgn) sized for the run
        kwargs["max_len"] = sizes.seq_len
    if "grid" in params:  # image mixers: a square grid of T tokens (T = 4096 = 64 x 64)
        side = math.isqrt(sizes.seq_len)
        kwargs["grid"] = (side, side)
    return mixerlab.create_token_mixer(name, **kwargs)


def _kwargs_for(cls: type, wanted: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in wanted.items() if k in accepted}


def peers(sizes: Sizes) -> list[tuple[str, str, Callable[[], nn.Module]]]:
    """``(peer name, mixer it is compared with, builder)``; builders raise ImportError if absent."""
    D, H = sizes.dim, sizes.heads

    def sdpa() -> nn.Module:
        from mixerlab.bench.peers import _SDPALayer

        return _SDPALayer(D, H)

    def fla_layer(cls_name: str, **kwargs: Any) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            import fla.layers

            cls = getattr(fla.layers, cls_name)
            return cls(**_kwargs_for(cls, {"hidden_size": D, "num_heads": H, **kwargs}))

        return build

    def mamba_ssm() -> nn.Module:
        from mamba_ssm import Mamba2

        return Mamba2(d_model=D, d_state=64, headdim=64, expand=2)  # mixerlab mamba2's head_dim

    def mamba_ssm_mamba() -> nn.Module:
        from mamba_ssm import Mamba

        return Mamba(d_model=D, d_state=16, d_conv=4, expand=2)  # mixerlab mamba's defaults

    return [
        ("torch SDPA, same projections", "attention", sdpa),
        ("fla GatedLinearAttention", "gla", fla_layer("GatedLinearAttention")),
        ("fla DeltaNet", "deltanet", fla_layer("DeltaNet")),
        ("fla GatedDeltaNet", "gated_deltanet", fla_layer("GatedDeltaNet", head_dim=D // H, expand_v=2)),
        ("fla MultiScaleRetention", "retention", fla_layer("MultiScaleRetention")),
        ("fla LinearAttention", "linear_attention", fla_layer("LinearAttention", feature_map="elu")),
        (
            "fla BasedLinearAttention (no window, no conv)",
            "based",
            fla_layer("BasedLinearAttention", num_key_value_heads=H),
        ),
        ("fla HGRN2Attention", "hgrn2", fla_layer("HGRN2Attention", expand_ratio=16)),
        ("fla HGRNAttention (real-valued)", "hgrn", fla_layer("HGRNAttention")),
        ("fla RWKV6Attention", "rwkv6", fla_layer("RWKV6Attention", expand_k=1.0, expand_v=1.0)),
        ("mamba_ssm Mamba2", "mamba2", mamba_ssm),
        ("mamba_ssm Mamba", "mamba", mamba_ssm_mamba),
        ("fla ForgettingAttention", "fox", fla_layer("ForgettingAttention")),
        (
            "fla StickBreakingAttention (attend_current)",
            "stick_breaking",
            fla_layer("StickBreakingAttention", attend_current=True),
        ),
        (
            "fla PaTHAttention (full-rank w, conv 4)",
            "path",
            fla_layer("PaTHAttention", use_low_rank_w=False, conv_size=4),
        ),
        ("fla DeltaFormerAttention (needs flash-attn)", "deltaformer", fla_layer("DeltaFormerAttention")),
        ("fla KimiDeltaAttention", "kda", fla_layer("KimiDeltaAttention", head_dim=D // H, expand_v=1)),
        ("fla RWKV7Attention", "rwkv7", fla_layer("RWKV7Attention", head_dim=D // H)),
        ("fla Comba", "comba", fla_layer("Comba", head_dim=D // H, expand_v=2)),
        (
            "fla GatedDeltaProduct",
            "gated_deltaproduct",
            fla_layer("GatedDeltaProduct", head_dim=D // H, expand_v=2, num_householder=2),
        ),
        (
            "fla GatedSlotAttention (output gate on)",
            "gsa",
            fla_layer("GatedSlotAttention", num_slots=64, use_output_gate=True),
        ),
        (
            "fla LogLinearMamba2",
            "log_linear",
            fla_layer("LogLinearMamba2", num_heads=2 * D // 64, head_dim=64, state_size=64, expand=2),
        ),
        ("fla MesaNet (conjugate gradient)", "mesanet", fla_layer("MesaNet", head_dim=D // H)),
    ]


def _with_mode(module: nn.Module, mode: str) -> nn.Module:
    module.mode = mode
    return module


def _error(exc: BaseException) -> str:
    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return line if len(line) < 160 else line[:157] + "..."


def run(device: torch.device, sizes: Sizes, budget_s: float, only: list[str] | None) -> dict[str, Any]:
    started = time.perf_counter()
    names = mixerlab.list_token_mixers()
    order = [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]
    if only:
        order = [n for n in order if n in only]
    rows: list[dict[str, Any]] = []
    peer_rows: list[dict[str, Any]] = []

    def timed(label: str, build: Callable[[], nn.Module], call) -> dict[str, Any]:
        row: dict[str, Any] = {"name": label}
        if time.perf_counter() - started > budget_s:
            row["error"] = "not measured: time budget spent"
            return row
        try:
            torch.manual_seed(0)
            module = build().to(device, torch.bfloat16)
            if getattr(module, "num_tokens", None) not in (None, sizes.seq_len):
                row["error"] = f"image mixer: reads {module.num_tokens} tokens, not {sizes.seq_len}"
                return row
            row.update(measure(module, call, sizes, device))
        except ImportError as exc:
            row["error"] = f"not installed: {exc}"
        except Exception as exc:  # one failure never stops the run
            row["error"] = _error(exc)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps(row), flush=True)
        return row

    # each mixer's peers just before it, so that a budget cut falls on both alike
    peers_of: dict[str, list[tuple[str, Callable[[], nn.Module]]]] = {}
    for label, mixer, build in peers(sizes):
        peers_of.setdefault(mixer, []).append((label, build))
    for name in order:
        for label, build in peers_of.get(name, []):
            peer_rows.append({**timed(label, build, first_output), "mixer": name})
        rows.append(timed(name, lambda name=name: build_mixer(name, sizes), mixer_call))
        if "backend" in TOKEN_MIXERS.entry(name).parameters():
            row = timed(
                f"{name} [torch]", lambda name=name: build_mixer(name, sizes, backend="torch"), mixer_call
            )
            rows.append(row)
        if name in ("mamba", "mamba2") and device.type == "cuda":  # auto prefers mamba-ssm: keep fla
            rows.append(
                timed(f"{name} [fla]", lambda name=name: build_mixer(name, sizes, backend="fla"), mixer_call)
            )
        if name == "mamba":  # the loop-free mode meant for GPUs
            rows.append(
                timed(
                    "mamba [parallel]",
                    lambda: _with_mode(build_mixer("mamba", sizes), "parallel"),
                    mixer_call,
                )
            )
    return {
        "rows": rows,
        "peers": peer_rows,
        "matmul_tflops": matmul_tflops(device, 8192 if device.type == "cuda" else 256),
        "seconds": time.perf_counter() - started,
    }


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def markdown(result: dict[str, Any], device: torch.device, sizes: Sizes, command: str) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    versions = ", ".join(
        f"{d} {_version(d)}" for d in ("torch", "triton", "flash-linear-attention", "mamba-ssm")
    )
    peer_by_mixer: dict[str, dict[str, Any]] = {}
    for p in result["peers"]:
        peer_by_mixer.setdefault(p["mixer"], p)
    lines = [
        f"### Training throughput on one {gpu}",
        "",
        f"`{command}`: forward + backward of one layer in bfloat16, B={sizes.batch}, "
        f"T={sizes.seq_len}, dim={sizes.dim}, {sizes.heads} heads; tokens/s (higher is better). "
        f"bfloat16 matmul rate measured in the same run: {result['matmul_tflops']:.3g} TFLOP/s. "
        f"{versions}. Run time {result['seconds']:.0f} s.",
        "",
        "| mixer | tokens/s | peak GiB | peer | peer tokens/s | ratio |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row in result["rows"]:
        base = row["name"].split(" ")[0]
        peer = peer_by_mixer.get(base) if " " not in row["name"] else None
        cells = [row["name"]]
        if "tok_s" in row:
            note = "" if row["seq_len"] == sizes.seq_len else f" (at T={row['seq_len']})"
            peak = f"{row['peak_gib']:.1f}" if "peak_gib" in row else "-"
            cells += [f"{row['tok_s']:,.0f}{note}", peak]
        else:
            cells += [row.get("error", "-"), ""]
        if peer is not None:
            ok = "tok_s" in peer and "tok_s" in row
            cells += [
                peer["name"],
                f"{peer['tok_s']:,.0f}" if "tok_s" in peer else peer.get("error", "-"),
                f"{row['tok_s'] / peer['tok_s']:.2f}x" if ok else "",
            ]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks the script itself")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for the whole run")
    parser.add_argument("--only", default="", help="comma-separated mixer names (default: all)")
    parser.add_argument("--out", default="", help="write the Markdown section here")
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sizes = TINY if args.tiny else Sizes()
    only = [n for n in args.only.split(",") if n] or None
    result = run(device, sizes, args.budget, only)
    command = "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(result, device, sizes, command.strip())
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "sizes": vars(sizes), "device": str(device)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
