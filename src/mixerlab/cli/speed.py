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


def _ints(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError("speed", name, text, "expected comma-separated integers, e.g. 256,1024") from None


@app.command()
def speed(
    mixers: str = typer.Option(None, help="Comma-separated mixer names (default: every registered mixer)."),
    quick: bool = typer.Option(
        False,
        help="Fewer lengths (256, 1024), float32 only, fewer repeats; still minutes per mixer on 2 cores.",
    ),
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
    section: str = typer.Option(
        None,
        help="Name of the BENCHMARKS.md section (between <!-- NAME:start/end --> markers; default "
        "'speed', or 'speed-quick' with --quick), e.g. for a run over a subset of the mixers.",
    ),
) -> None:
    """Throughput, memory, decoding speed and speed-ups against baselines measured in the same run.

    Ctrl-C stops it; mixers measured so far are in <out>/speed.json (continue with --resume).
    """
    overrides = {
        k: v
        for k, v in {
            "mixers": None if mixers is None else [m for m in mixers.split(",") if m],
            "lengths": _ints(lengths, "lengths"),
            "decode_contexts": _ints(decode_contexts, "decode_contexts"),
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
            results = _load(from_json, "from_json")
            measured_by = results.config.get("command", f"not recorded in {from_json}")
            command = f"{measured_by}`, tables re-rendered by `{command}"
            quick = results.config.get("quick", quick)
        else:
            again = [] if redo is None else [m for m in redo.split(",") if m]
            results = _run(overrides, quick, out, resume, command, again)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: mixers measured so far are in {out / 'speed.json'}; add --resume to continue",
            err=True,
        )
        raise typer.Exit(code=130) from None
    typer.echo(summary(results))
    for path in write_files(results, out):
        typer.echo(f"wrote {path}")
    _print_table(results)
    if benchmarks_md is not None:
        name = section or ("speed-quick" if quick else "speed")
        update_benchmarks_md(benchmarks_md, name, command, results)
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
        previous = _load(json_path, "resume")
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


def _load(path: Path, field: str) -> SpeedResults:
    """A speed.json written by an earlier run; anything else is a one-line error naming ``field``."""
    if not path.is_file():
        raise ConfigError("speed", field, str(path), "expected an existing speed.json")
    try:
        return SpeedResults.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            "speed", field, str(path), f"expected a speed.json written by `mixerlab speed` ({err})"
        ) from None


def _print_table(results: SpeedResults) -> None:
    """The compact terminal table: per mixer, training throughput at each length, first dtype."""
    from mixerlab.bench.speed_report import throughput_table
    from mixerlab.cli._table import print_table

    dtype = results.config["dtypes"][0]
    rows = throughput_table(results, dtype)
    keep = [i for i, name in enumerate(rows[0]) if i == 0 or name.startswith(("fwd+bwd", "peak MiB"))]
    table = [[row[i] for i in keep] for row in rows]
    print_table(f"speed ({dtype})", table[0], table[1:], "fwd+bwd: one training step of the layer")
