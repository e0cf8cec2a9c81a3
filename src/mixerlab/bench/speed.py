"""``mixerlab speed``: throughput and memory of every token mixer, with baselines from the same run.

For each selected mixer, at batch ``B`` and width ``dim``, over a grid of sequence lengths and
dtypes, it measures forward and forward+backward tokens/s, peak memory, achieved GFLOP/s (FLOPs
counted by ``torch.utils.flop_counter``) as a fraction of this machine's dense matmul GFLOP/s,
decoding tokens/s from a state at several context lengths, the speed-up over the mixer's own
per-step reference, and the ratio to CPU-runnable peer implementations where installed.
Figures are medians over repeats after warm-up; every ratio is against a baseline measured in
the same run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mixerlab.bench.measure import (
    available_memory_mb,
    machine_info,
    matmul_gflops,
    memory_cap,
    peak_memory_mb,
    time_call,
    tune_allocator,
)
from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.registry import TOKEN_MIXERS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class SpeedConfig:
    """What ``mixerlab speed`` measures. ``quick()`` is the few-minute version."""

    mixers: list[str] | None = None  # None: every registered token mixer
    lengths: list[int] = field(default_factory=lambda: [256, 1024, 4096, 16384])
    batch_size: int = 4
    dim: int = 256
    num_heads: int = 4
    dtypes: list[str] = field(default_factory=lambda: ["float32", "bfloat16"])
    repeats: int = 5
    warmup: int = 2
    decode_contexts: list[int] = field(default_factory=lambda: [1024, 4096, 16384])
    decode_steps: int = 32
    reference_length: int = 4096
    # A single step slower than this stops the mixer's longer lengths (and long references).
    max_step_seconds: float = 30.0
    peers: bool = True
    # Lengths at which peers are measured (None: all of ``lengths``); peers that are per-step loops
    # dominate a short run otherwise.
    peer_lengths: list[int] | None = None
    threads: int | None = None
    # "tuned" keeps large freed blocks in the heap (see measure.tune_allocator); "default" is glibc's.
    allocator: str = "tuned"

    @classmethod
    def quick(cls, **overrides: Any) -> SpeedConfig:
        base = cls(
            lengths=[256, 1024],
            dtypes=["float32"],
            repeats=3,
            warmup=1,
            decode_contexts=[256, 1024],
            decode_steps=4,
            reference_length=64,
            peer_lengths=[256],
            max_step_seconds=5.0,
        )
        for key, value in overrides.items():
            setattr(base, key, value)
        return base

    def validate(self) -> None:
        owner = "speed"
        if self.mixers is not None:
            for name in self.mixers:
                check(
                    name in TOKEN_MIXERS,
                    owner,
                    "mixers",
                    name,
                    f"registered mixers are {TOKEN_MIXERS.list()}",
                )
        for name in ("batch_size", "dim", "num_heads", "repeats", "decode_steps", "reference_length"):
            check_positive_int(owner, name, getattr(self, name))
        check(self.warmup >= 0, owner, "warmup", self.warmup, "expected >= 0")
        for seq_len in [*self.lengths, *self.decode_contexts]:
            check_positive_int(owner, "lengths", seq_len)
        for dt in self.dtypes:
            check(dt in DTYPES, owner, "dtypes", dt, f"expected one of {sorted(DTYPES)}")
        check(
            self.allocator in ("tuned", "default"),
            owner,
            "allocator",
            self.allocator,
            "expected 'tuned' or 'default'",
        )


@dataclass
class SpeedResults:
    machine: dict[str, Any]
    config: dict[str, Any]
    matmul_gflops: dict[str, float]
    cases: list[dict[str, Any]] = field(default_factory=list)  # one per (mixer, dtype, length)
    decode: list[dict[str, Any]] = field(default_factory=list)  # one per (mixer, dtype, context)
    reference: list[dict[str, Any]] = field(default_factory=list)  # one per mixer
    peers: list[dict[str, Any]] = field(default_factory=list)  # one per (mixer, peer, length)
    done: list[str] = field(default_factory=list)  # mixers whose every figure is in the lists above
    # Matmul peaks measured by runs that resumed this one: the yardstick of the rows they added.
    resumed_matmul_gflops: list[dict[str, float]] = field(default_factory=list)
    # The matmul peak measured again at the end: how much the machine drifted during the run.
    matmul_gflops_end: dict[str, float] = field(default_factory=dict)
    # The matmul peak measured just before each mixer: the yardstick of that mixer's rows.
    mixer_matmul_gflops: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeedResults:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# Config fields that may differ between an interrupted run and the run that resumes it.
_RESUMABLE_DIFFERENCES = {"mixers", "date", "threads"}


def resumable(previous: SpeedResults, cfg: SpeedConfig) -> None:
    """Raise a ConfigError unless ``previous`` was measured with the same settings as ``cfg``."""
    here = machine_info()
    for key in ("cpu", "torch"):
        check(
            previous.machine.get(key) == here.get(key),
            "speed",
            f"machine.{key}",
            here.get(key),
            f"the run being resumed was measured with {previous.machine.get(key)!r}",
        )
    now = asdict(cfg)
    for key, value in now.items():
        if key in _RESUMABLE_DIFFERENCES:
            continue
        before = previous.config.get(key)
        check(
            before == value,
            "speed",
            key,
            value,
            f"the run being resumed used {key}={before!r}; resume with the same settings or a new --out",
        )


def build_mixer(name: str, cfg: SpeedConfig, dtype: torch.dtype, **options: Any) -> nn.Module:
    """The mixer at the benchmark size; ``num_heads`` only for mixers that have heads."""
    kwargs: dict[str, Any] = {"dim": cfg.dim, **options}
    if "max_len" in TOKEN_MIXERS.entry(name).parameters():
        # mixers whose filters span the whole sequence (hyena, pgn) are sized for the longest
        # sequence of the run, decoding steps included
        kwargs.setdefault("max_len", max([*cfg.lengths, *cfg.decode_contexts]) + cfg.decode_steps)
    if "num_heads" in TOKEN_MIXERS.entry(name).parameters():
        kwargs["num_heads"] = cfg.num_heads
    return TOKEN_MIXERS.create(name, **kwargs).to(dtype)


def train_step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, call: Callable) -> Callable[[], None]:
    """One forward+backward of ``call(module, x)`` against ``grad``, leaving no gradients behind."""

    def step() -> None:
        y = call(module, x)
        y.backward(grad)
        for p in module.parameters():
            p.grad = None
        x.grad = None

    return step


def train_inputs(cfg: SpeedConfig, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The input ``[B, T, D]`` (requiring grad) and output gradient of every timed step."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, seq_len, cfg.dim, generator=g).to(dtype).requires_grad_()
    return x, torch.randn(cfg.batch_size, seq_len, cfg.dim, generator=g).to(dtype)


def mixer_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)[0]


def measure_layer(
    module: nn.Module,
    call: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    cfg: SpeedConfig,
    seq_len: int,
    dtype: torch.dtype,
    *,
    repeats: int | None = None,
    warmup: int | None = None,
    flops: bool = True,
    forward: bool = True,
    memory: bool = True,
) -> dict[str, Any]:
    """Forward and forward+backward throughput, peak memory and FLOPs of one layer at one length."""
    x, grad = train_inputs(cfg, seq_len, dtype)
    tokens = cfg.batch_size * seq_len
    repeats = cfg.repeats if repeats is None else repeats
    warmup = cfg.warmup if warmup is None else warmup
    row: dict[str, Any] = {"seq_len": seq_len, "dtype": str(dtype).removeprefix("torch.")}
    step = train_step(module, x, grad, call)
    if flops:
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        row["flops_fwdbwd"] = counter.get_total_flops()
        warmup = max(0, warmup - 1)
    t = time_call(step, repeats=repeats, warmup=warmup, max_seconds=cfg.max_step_seconds * 2)
    row["fwdbwd_s"] = t.median_s
    row["fwdbwd_tok_s"] = tokens / t.median_s
    if memory:
        row["peak_mem_mb"] = peak_memory_mb(step)
    if forward:
        with torch.no_grad():
            tf = time_call(
                lambda: call(module, x), repeats=repeats, warmup=1, max_seconds=cfg.max_step_seconds
            )
        row["fwd_tok_s"] = tokens / tf.median_s
    if flops:
        row["gflops"] = row["flops_fwdbwd"] / t.median_s / 1e9
    return row


def measure_decode(module: nn.Module, cfg: SpeedConfig, context: int, dtype: torch.dtype) -> dict[str, Any]:
    """Tokens/s of one-token steps from a state that has seen ``context`` tokens."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        _, state = module(torch.randn(cfg.batch_size, context, cfg.dim, generator=g).to(dtype))
        steps = [
            torch.randn(cfg.batch_size, 1, cfg.dim, generator=g).to(dtype) for _ in range(cfg.decode_steps)
        ]

        def run() -> None:
            s = state
            for x1 in steps:
                _, s = module(x1, state=s)

        t = time_call(run, repeats=cfg.repeats, warmup=1, max_seconds=cfg.max_step_seconds)
    return {
        "context": context,
        "dtype": str(dtype).removeprefix("torch."),
        "decode_tok_s": cfg.batch_size * cfg.decode_steps / t.median_s,
    }


# what a measurement may raise and the run reports as the row's error (MemoryError: the cap)
_MEASURE_ERRORS = (RuntimeError, NotImplementedError, ValueError, MemoryError)
# Shares of the memory free at the time: a cost estimated above SKIP_SHARE is not run; the cap
# at CAP_SHARE stops what an estimate missed.
_SKIP_SHARE, _CAP_SHARE = 0.5, 0.8


def _too_big(estimated_mb: float) -> bool:
    """Whether an estimated peak (MiB) exceeds the share of free memory a measurement may take."""
    return estimated_mb > _SKIP_SHARE * available_memory_mb()


def _error(exc: BaseException) -> str:
    if "can't allocate memory" in str(exc):
        share = f"{_CAP_SHARE:.0%}"
        return f"{type(exc).__name__}: over the memory cap ({share} of the memory free when the mixer began)"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def run_speed(
    cfg: SpeedConfig,
    log: Callable[[str], None] = print,
    *,
    previous: SpeedResults | None = None,
    on_mixer_done: Callable[[SpeedResults], None] | None = None,
) -> SpeedResults:
    """Measure every selected mixer; ``on_mixer_done`` sees the results after each mixer (to write
    them, so an interrupted run keeps what it measured). With ``previous`` (an interrupted run with
    the same settings) its finished mixers are kept, not measured again; rows measured now are
    shares of the matmul measured just before their mixer (each row records its ``matmul_gflops``)."""
    cfg.validate()
    if previous is not None:
        resumable(previous, cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    names = cfg.mixers if cfg.mixers is not None else TOKEN_MIXERS.list()
    if cfg.allocator == "tuned" and not tune_allocator():
        log("note: the allocator could not be tuned (not glibc); figures use its defaults")
    peak = {dt: matmul_gflops(DTYPES[dt]) for dt in cfg.dtypes}
    log("matmul peak: " + ", ".join(f"{dt} {v:.0f} GFLOP/s" for dt, v in peak.items()))
    if previous is None:
        results = SpeedResults(machine=machine_info(), config=asdict(cfg), matmul_gflops=peak)
    else:
        results = _keep_finished(previous)
        results.config = {**previous.config, **asdict(cfg)}  # keeps the first run's date and command
        # new rows are measured against this process's matmul (the machine may have drifted
        # since the interrupted run: 201 then 161 GFLOP/s was seen here); each row keeps its own
        results.resumed_matmul_gflops.append(peak)
        log(f"resuming: {len(results.done)} mixers kept ({', '.join(results.done) or 'none'})")
    for name in names:
        if name in results.done:
            continue
        started = time.perf_counter()
        # On a shared machine the matmul drifts within a run: each mixer's rows are shares of
        # the matmul measured just before it (about a second per mixer).
        peak = {dt: matmul_gflops(DTYPES[dt]) for dt in cfg.dtypes}
        results.mixer_matmul_gflops[name] = peak
        # a hard stop under the estimates: an allocation past the cap fails as an error row instead
        # of the kernel's OOM killer ending the run
        with memory_cap(_CAP_SHARE * available_memory_mb()):
            _measure_mixer(name, cfg, peak, results, log)
        results.done.append(name)
        log(f"{name}: {time.perf_counter() - started:.1f} s")
        if on_mixer_done is not None:
            on_mixer_done(results)
    results.matmul_gflops_end = {dt: matmul_gflops(DTYPES[dt]) for dt in cfg.dtypes}
    return results


def _measure_mixer(
    name: str,
    cfg: SpeedConfig,
    peak: dict[str, float],
    results: SpeedResults,
    log: Callable[[str], None],
) -> None:
    """Every case, decoding context, the reference and the peers of one mixer, into ``results``."""
    for dt in cfg.dtypes:
        dtype = DTYPES[dt]
        torch.manual_seed(0)
        try:
            module = build_mixer(name, cfg, dtype)
        except (ConfigError, RuntimeError, MemoryError, TypeError) as exc:
            results.cases.append({"mixer": name, "dtype": dt, "error": _error(exc)})
            continue
        too_slow = False
        held: list[tuple[int, float]] = []  # (length, peak MiB) so far
        for seq_len in cfg.lengths:
            row: dict[str, Any] = {"mixer": name, "dtype": dt, "seq_len": seq_len}
            memory = _extrapolate(held, seq_len)
            if too_slow:
                row["error"] = "skipped: the previous length exceeded max_step_seconds"
            elif _too_big(memory):
                # srwm trains step by step and keeps every step's fast weights: 19 GB at 16k
                row["error"] = f"skipped: estimated {memory:,.0f} MiB peak memory"
            else:
                try:
                    row.update(measure_layer(module, mixer_call, cfg, seq_len, dtype))
                    row["matmul_gflops"] = peak[dt]
                    row["frac_matmul_peak"] = row["gflops"] / peak[dt]
                    too_slow = row["fwdbwd_s"] > cfg.max_step_seconds
                    if finite(row["peak_mem_mb"]) and row["peak_mem_mb"] > 0:
                        held.append((seq_len, row["peak_mem_mb"]))
                except _MEASURE_ERRORS as exc:
                    row["error"] = _error(exc)
            results.cases.append(row)
        for context in cfg.decode_contexts:
            try:
                results.decode.append({"mixer": name, **measure_decode(module, cfg, context, dtype)})
            except _MEASURE_ERRORS as exc:
                results.decode.append({"mixer": name, "dtype": dt, "context": context, "error": _error(exc)})
        if dt == cfg.dtypes[0]:
            results.reference.append(_measure_reference(name, module, cfg, dtype, results.cases))
            if cfg.peers:
                results.peers.extend(_measure_peers(name, cfg, dtype, results.cases, log))


def _keep_finished(previous: SpeedResults) -> SpeedResults:
    """The rows of ``previous`` for its finished mixers (all of them: a resumed run that measures
    a few mixers must not drop the others); a half-measured mixer's rows are dropped, so it is
    measured again whole."""

    def rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in items if r["mixer"] in previous.done]

    return replace(
        previous,
        config=dict(previous.config),
        cases=rows(previous.cases),
        decode=rows(previous.decode),
        reference=rows(previous.reference),
        peers=rows(previous.peers),
        done=list(previous.done),
        resumed_matmul_gflops=list(previous.resumed_matmul_gflops),
        mixer_matmul_gflops={k: v for k, v in previous.mixer_matmul_gflops.items() if k in previous.done},
    )


def _fast_row(cases: list[dict[str, Any]], name: str, dtype: str, seq_len: int) -> dict[str, Any] | None:
    for row in cases:
        if (
            row["mixer"] == name
            and row["dtype"] == dtype
            and row.get("seq_len") == seq_len
            and "error" not in row
        ):
            return row
    return None


def _measure_reference(
    name: str, module: nn.Module, cfg: SpeedConfig, dtype: torch.dtype, cases: list[dict[str, Any]]
) -> dict[str, Any]:
    """Forward+backward of the per-step reference at ``reference_length``, against the fast form."""
    seq_len, dt = cfg.reference_length, str(dtype).removeprefix("torch.")
    row: dict[str, Any] = {"mixer": name, "seq_len": seq_len, "dtype": dt}
    fast = _fast_row(cases, name, dt, seq_len)
    try:
        if fast is None:
            fast = measure_layer(module, mixer_call, cfg, seq_len, dtype, flops=False, forward=False)
        module.mode = "reference"
        # Probe at two short lengths first and extrapolate time and memory with their measured
        # growth (a per-query reference grows like L^2 in time; a per-step graph may hold much
        # memory): a reference that would take minutes, or more than half the free memory, is
        # reported with its estimate, not run.
        estimate = memory = 0.0
        if seq_len > 512:
            # an unmeasured call first: a cold first call (hyena's: 1.16 s at 128 tokens, then 0.29)
            # flattens the measured growth, and an L^2 reference passes for a linear one
            _probe(module, cfg, 64, dtype)
            probes = [(n, _probe(module, cfg, n, dtype)) for n in (128, 256)]
            estimate = _extrapolate([(n, s) for n, (s, _) in probes], seq_len)
            held = [(n, mb) for n, (_, mb) in probes if finite(mb) and mb > 0]
            # an estimate only: at probe lengths a linear part can hide a quadratic one, which
            # the memory cap of the mixer's measurement then stops
            memory = _extrapolate(held, seq_len) if len(held) == 2 else 0.0
        too_long, too_big = estimate > 20 * cfg.max_step_seconds, _too_big(memory)
        if too_long or too_big:
            reasons = [(f"{estimate:.0f} s per step", too_long), (f"{memory:,.0f} MiB peak memory", too_big)]
            why = " and ".join(text for text, applies in reasons if applies)
            row["error"] = f"skipped: estimated {why} at L={seq_len}"
            row["ref_estimated_s"] = estimate
            row["ref_estimated_mb"] = memory
            row["speedup_lower_bound"] = estimate / fast["fwdbwd_s"]
        else:
            ref = measure_layer(
                module, mixer_call, cfg, seq_len, dtype, repeats=1, warmup=0, flops=False, forward=False
            )
            row["ref_fwdbwd_tok_s"] = ref["fwdbwd_tok_s"]
            row["fast_fwdbwd_tok_s"] = fast["fwdbwd_tok_s"]
            row["speedup"] = fast["fwdbwd_tok_s"] / ref["fwdbwd_tok_s"]
    except _MEASURE_ERRORS as exc:
        row["error"] = _error(exc)
    finally:
        module.mode = type(module).modes[0]
    return row


def _probe(module: nn.Module, cfg: SpeedConfig, seq_len: int, dtype: torch.dtype) -> tuple[float, float]:
    """Seconds and peak MiB of one forward+backward, from a single run (a slow reference's probe
    at 256 tokens can take 90 s; running it twice for time and memory would double that)."""
    x, grad = train_inputs(cfg, seq_len, dtype)
    step = train_step(module, x, grad, mixer_call)
    start = time.perf_counter()
    peak = peak_memory_mb(step)
    return time.perf_counter() - start, peak


def _measure_peers(
    name: str, cfg: SpeedConfig, dtype: torch.dtype, cases: list[dict[str, Any]], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    from mixerlab.bench.peers import peers_for

    rows = []
    dt = str(dtype).removeprefix("torch.")
    default: nn.Module | None = None  # our mixer as the grid builds it, timed beside each peer
    for peer in peers_for(name):
        if default is None:
            torch.manual_seed(0)
            default = build_mixer(name, cfg, dtype)
        torch.manual_seed(0)
        same = build_mixer(name, cfg, dtype, **peer.same_settings) if peer.same_settings else None
        timed: list[tuple[int, float]] = []  # (length, seconds per step) of this peer so far
        held: list[tuple[int, float]] = []  # (length, peak MiB) of this peer so far
        for seq_len in cfg.peer_lengths or cfg.lengths:
            row: dict[str, Any] = {
                "mixer": name,
                "peer": peer.name,
                "seq_len": seq_len,
                "dtype": dt,
                "peer_kind": peer.kind,
            }
            fast = _fast_row(cases, name, dt, seq_len)
            estimate = _extrapolate(timed, seq_len)
            if estimate > cfg.max_step_seconds:
                # a per-step peer grows faster than linearly (its backward walks a long graph):
                # at 16k fla's recurrent GLA took 424 s per step; report the estimate instead
                row["error"] = f"skipped: estimated {estimate:.0f} s per step"
                if fast is not None:
                    row["ratio_estimated"] = fast["fwdbwd_tok_s"] * estimate / (cfg.batch_size * seq_len)
                rows.append(row)
                break
            memory = _extrapolate(held, seq_len)
            if _too_big(memory):
                # fla's quadratic retention at 16k holds [B, H, T, T] scores: 17 GB, and the
                # run was killed by the kernel's OOM killer; a peer never risks the whole run
                row["error"] = f"skipped: estimated {memory:,.0f} MiB peak memory"
                rows.append(row)
                break
            try:
                module = peer.build(cfg.dim, cfg.num_heads).to(dtype)
                measured = measure_layer(
                    module, peer.call, cfg, seq_len, dtype, warmup=1, flops=False, forward=False
                )
                timed.append((seq_len, measured["fwdbwd_s"]))
                if finite(measured["peak_mem_mb"]) and measured["peak_mem_mb"] > 0:
                    held.append((seq_len, measured["peak_mem_mb"]))
                row["peer_peak_mem_mb"] = measured["peak_mem_mb"]
                row["peer_fwdbwd_tok_s"] = measured["fwdbwd_tok_s"]
                # ours timed again right after the peer (and, with its settings, once more), so
                # each ratio sees one machine state: the grid's figure was taken minutes earlier
                row["ours_fwdbwd_tok_s"] = _tokens_per_s(default, cfg, seq_len, dtype)
                row["ratio"] = row["ours_fwdbwd_tok_s"] / measured["fwdbwd_tok_s"]
                if same is not None:
                    row["same_settings"] = peer.same_settings
                    row["same_fwdbwd_tok_s"] = _tokens_per_s(same, cfg, seq_len, dtype)
                    row["same_ratio"] = row["same_fwdbwd_tok_s"] / measured["fwdbwd_tok_s"]
            except ImportError as exc:
                row["error"] = f"not installed: {exc}"
                rows.append(row)
                break
            except (*_MEASURE_ERRORS, TypeError, AttributeError) as exc:
                row["error"] = _error(exc)
            rows.append(row)
    if rows:
        log(f"  peers of {name}: " + ", ".join(sorted({r["peer"] for r in rows})))
    return rows


def _tokens_per_s(module: nn.Module, cfg: SpeedConfig, seq_len: int, dtype: torch.dtype) -> float:
    """fwd+bwd tokens/s of one of our mixers, timed beside a peer (no FLOPs, no memory)."""
    measured = measure_layer(
        module, mixer_call, cfg, seq_len, dtype, warmup=1, flops=False, forward=False, memory=False
    )
    return measured["fwdbwd_tok_s"]


def _extrapolate(points: list[tuple[int, float]], seq_len: int) -> float:
    """A cost (seconds or MiB) at ``seq_len`` from the last two measured (length, cost) points,
    with their growth exponent (at least linear); 0 when nothing was measured yet."""
    if not points:
        return 0.0
    n1, c1 = points[-1]
    growth = 1.0
    if len(points) >= 2:
        n0, c0 = points[-2]
        growth = max(1.0, math.log(c1 / c0) / math.log(n1 / n0))
    return c1 * (seq_len / n1) ** growth


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


__all__ = ["SpeedConfig", "SpeedResults", "resumable", "run_speed"]
