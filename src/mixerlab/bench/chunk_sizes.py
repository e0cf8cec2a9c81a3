"""Chunk size by measurement: forward+backward throughput of each chunked mixer over chunk sizes.

Chunked forms trade matmul efficiency inside a chunk (larger is better) against quadratic work per
chunk and the length of the sequential loop over chunks; the best size depends on the machine.
Every size of one mixer is timed in interleaved rounds (one step per size per round), so slow
drift of a shared machine affects all sizes alike, and each figure is reported relative to the
mixer's default chunk size measured in the same rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mixerlab.bench.speed import DTYPES, SpeedConfig, build_mixer, mixer_call, train_inputs, train_step
from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TOKEN_MIXERS


def chunked_mixers() -> list[str]:
    """Registered token mixers with a ``chunk_size`` option."""
    return [n for n in TOKEN_MIXERS.list() if "chunk_size" in TOKEN_MIXERS.entry(n).parameters()]


@dataclass
class ChunkSweep:
    mixers: list[str] | None = None  # None: every chunked mixer
    sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    seq_len: int = 4096
    batch_size: int = 4
    dim: int = 256
    num_heads: int = 4
    dtype: str = "float32"
    rounds: int = 3

    def validate(self) -> None:
        for name in self.mixers or []:
            check(
                name in chunked_mixers(), "chunk_sizes", "mixers", name, f"expected one of {chunked_mixers()}"
            )
        for name in ("seq_len", "batch_size", "dim", "num_heads", "rounds"):
            check_positive_int("chunk_sizes", name, getattr(self, name))
        for size in self.sizes:
            check_positive_int("chunk_sizes", "sizes", size)
        check(self.dtype in DTYPES, "chunk_sizes", "dtype", self.dtype, f"expected one of {sorted(DTYPES)}")


def sweep_chunk_sizes(cfg: ChunkSweep, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (mixer, chunk size): median fwd+bwd tokens/s and the ratio to the default size."""
    cfg.validate()
    dtype = DTYPES[cfg.dtype]
    speed_cfg = SpeedConfig(dim=cfg.dim, num_heads=cfg.num_heads, batch_size=cfg.batch_size)
    rows: list[dict[str, Any]] = []
    for name in cfg.mixers or chunked_mixers():
        default = TOKEN_MIXERS.entry(name).parameters()["chunk_size"].default
        sizes = sorted({*cfg.sizes, default})
        x, grad = train_inputs(speed_cfg, cfg.seq_len, dtype)
        steps = {}
        for size in sizes:
            torch.manual_seed(0)  # same weights for every size: only the chunking differs
            module = build_mixer(name, speed_cfg, dtype, chunk_size=size)
            steps[size] = train_step(module, x, grad, mixer_call)
        times: dict[int, list[float]] = {size: [] for size in sizes}
        for round_ in range(cfg.rounds + 1):  # round 0 warms up
            for size, step in steps.items():
                start = time.perf_counter()
                step()
                elapsed = time.perf_counter() - start
                if round_:
                    times[size].append(elapsed)
        tokens = cfg.batch_size * cfg.seq_len
        base = tokens / statistics.median(times[default])
        for size in sizes:
            tok_s = tokens / statistics.median(times[size])
            rows.append(
                {
                    "mixer": name,
                    "chunk_size": size,
                    "default": size == default,
                    "fwdbwd_tok_s": tok_s,
                    "vs_default": tok_s / base,
                }
            )
        best = max((r for r in rows if r["mixer"] == name), key=lambda r: r["fwdbwd_tok_s"])
        log(f"{name}: default {default}, best {best['chunk_size']} ({best['vs_default']:.2f}x)")
    return rows


def chunk_table(rows: list[dict[str, Any]], sizes: list[int]) -> list[list[str]]:
    """Markdown-ready rows: tokens/s relative to the default per size, and the best size."""
    header = [
        "mixer",
        "default",
        "default fwd+bwd tok/s",
        *[f"C={s}" for s in sizes],
        "best",
        "best / default",
    ]
    table = [header]
    for name in dict.fromkeys(r["mixer"] for r in rows):
        mine = {r["chunk_size"]: r for r in rows if r["mixer"] == name}
        default = next(r for r in mine.values() if r["default"])
        best = max(mine.values(), key=lambda r: r["fwdbwd_tok_s"])
        cells = [f"{mine[s]['vs_default']:.2f}x" if s in mine else "–" for s in sizes]
        table.append(
            [
                name,
                str(default["chunk_size"]),
                f"{default['fwdbwd_tok_s']:,.0f}",
                *cells,
                str(best["chunk_size"]),
                f"{best['vs_default']:.2f}x",
            ]
        )
    return table


__all__ = ["ChunkSweep", "chunk_table", "chunked_mixers", "sweep_chunk_sizes"]
