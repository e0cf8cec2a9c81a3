"""``mixerlab speed``: measure throughput and memory of token mixers (see bench/speed.py)."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path

import typer

from mixerlab.bench.speed import SpeedConfig, SpeedResults, run_speed
from mixerlab.bench.speed_report import summary, update_benchmarks_md, write_files
from mixerlab.cli.app import app
from mixerlab.errors import ConfigError


def _ints(text: str | None) -> list[int] | None:
    return None if text is None else [int(v) for v in text.split(",") if v]


@app.command()
def speed(
    mixers: str = typer.Option(None, help="Comma-separated mixer names (default: every registered mixer)."),
    quick: bool = typer.Option(False, help="A few-minute run: L in {256, 1024}, float32, fewer repeats."),
    lengths: str = typer.Option(None, help="Comma-separated sequence lengths (default 256,1024,4096,16384)."),
    dtypes: str = typer.Option(None, help="Comma-separated dtypes (default float32,bfloat16)."),
    decode_contexts: str = typer.Option(None, help="Comma-separated decoding contexts (default 1k,4k,16k)."),
    batch_size: int = typer.Option(None, help="Batch size (default 4)."),
    dim: int = typer.Option(None, help="Model width (default 256)."),
    num_heads: int = typer.Option(None, help="Heads, for mixers that have them (default 4)."),
    repeats: int = typer.Option(None, help="Timed repeats per figure (median reported)."),
    peers: bool = typer.Option(True, help="Also measure installed peer implementations."),
    threads: int = typer.Option(None, help="torch threads (default: torch's choice, one per core)."),
    max_step_seconds: float = typer.Option(None, help="A step slower than this skips longer lengths."),
    allocator: str = typer.Option("tuned", help="'tuned' keeps large freed blocks (glibc); 'default'."),
    out: Path = typer.Option(Path("mixerlab-runs/speed"), help="Folder for speed.json, .csv, .png."),
    resume: bool = typer.Option(
        False, help="Continue an interrupted run in --out: mixers already in its speed.json are kept."
    ),
    redo: str = typer.Option(
        None, help="With --resume: comma-separated mixers to measure again (e.g. after a fix)."
    ),
    from_json: Path = typer.Option(
        None, help="Measure nothing: re-render tables, files and --benchmarks-md from this speed.json."
    ),
    benchmarks_md: Path = typer.Option(None, help="Also write the tables into this BENCHMARKS.md section."),
) -> None:
    """Throughput, memory, decoding speed and speed-ups against baselines measured in the same run."""
    overrides = {
        k: v
        for k, v in {
            "mixers": None if mixers is None else [m for m in mixers.split(",") if m],
            "lengths": _ints(lengths),
            "decode_contexts": _ints(decode_contexts),
            "dtypes": None if dtypes is None else [d for d in dtypes.split(",") if d],
            "batch_size": batch_size,
            "dim": dim,
            "num_heads": num_heads,
            "repeats": repeats,
            "peers": peers,
            "allocator": allocator,
            "threads": threads,
            "max_step_seconds": max_step_seconds,
        }.items()
        if v is not None
    }
    command = "mixerlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        if from_json is not None:
            if not from_json.exists():
                raise ConfigError("speed", "from_json", str(from_json), "expected an existing speed.json")
            results = SpeedResults.from_dict(json.loads(from_json.read_text()))
            measured_by = results.config.get("command", f"not recorded in {from_json}")
            command = f"{measured_by}`, tables re-rendered by `{command}"
            quick = results.config.get("quick", quick)
        else:
            again = [] if redo is None else [m for m in redo.split(",") if m]
            results = _run(overrides, quick, out, resume, command, again)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from err
    typer.echo(summary(results))
    for path in write_files(results, out):
        typer.echo(f"wrote {path}")
    if benchmarks_md is not None:
        update_benchmarks_md(benchmarks_md, "speed-quick" if quick else "speed", command, results)
        typer.echo(f"updated {benchmarks_md}")


def _run(
    overrides: dict, quick: bool, out: Path, resume: bool, command: str, redo: list[str]
) -> SpeedResults:
    cfg = SpeedConfig.quick(**overrides) if quick else SpeedConfig(**overrides)
    previous = None
    if resume:
        json_path = out / "speed.json"
        if not json_path.exists():
            allowed = f"{json_path} does not exist; run without --resume first"
            raise ConfigError("speed", "resume", True, allowed)
        previous = SpeedResults.from_dict(json.loads(json_path.read_text()))
        for name in redo:
            if name not in previous.done:
                raise ConfigError(
                    "speed", "redo", name, f"expected a finished mixer of {json_path}: {previous.done}"
                )
        previous.done = [n for n in previous.done if n not in redo]
    elif redo:
        raise ConfigError("speed", "redo", ",".join(redo), "only allowed with --resume")
    today = datetime.date.today().isoformat()

    def stamp(results: SpeedResults) -> SpeedResults:
        # the first run's date and command stay with a resumed run
        results.config["date"] = results.config.get("date") or today
        results.config["command"] = results.config.get("command") or command
        results.config["quick"] = quick
        return results

    def save(partial: SpeedResults) -> None:
        # Written after every mixer, so an interrupted run keeps what it measured (--resume).
        write_files(stamp(partial), out, plot=False)

    return stamp(
        run_speed(cfg, log=lambda msg: typer.echo(msg, err=True), previous=previous, on_mixer_done=save)
    )
