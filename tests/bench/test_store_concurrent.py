"""Two processes writing one store at once lose no row and duplicate none (SQLite and PostgreSQL).

Each case runs on both backends through ``store_url`` (tests/bench/conftest.py). The processes are
real ones (separate connections, separate pools), started together on a go signal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mixerlab
from mixerlab.bench.defaults import TINY_SWEEP
from mixerlab.bench.store import ResultStore

# Both processes open the (not yet created) store at once, then, once both have it open, write the
# same keys, each in its own shuffled order (in one order, the first to start stays ahead and the
# other only ever finds rows already there); each prints the keys its write inserted. The two go
# signals are files in the folder argv[3]. (SQLite's lock often lets one writer do all its writes
# while the other backs off; PostgreSQL interleaves them.)
WRITER = """
import json, random, sys, time
from pathlib import Path
from mixerlab.bench.store import ResultStore

url, name, signals, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])


def wait_for(signal):
    print("ready", flush=True)
    while not (signals / signal).exists():
        time.sleep(0.002)


wait_for("open")
store = ResultStore(url)
keys = [f"k{i:03d}" for i in range(count)]
random.Random(name).shuffle(keys)
wait_for("write")
won = [key for key in keys if store.write({"run_key": key, "sweep": name, "history": [{"writer": name}]})]
store.close()
print(json.dumps(won))
"""

# Waits for the go signal (a file, argv[1]), then runs the command line with the other arguments.
GATED_CLI = """
import pathlib, runpy, sys, time

print("ready", flush=True)
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.002)
sys.argv = ["mixerlab", *sys.argv[2:]]
runpy.run_module("mixerlab.cli.main", run_name="__main__")
"""


def _env() -> dict[str, str]:
    # The children import this checkout's mixerlab, whatever the installed one is.
    src = str(Path(mixerlab.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _start_together(commands: list[list[str]], signals: list[Path]) -> list[subprocess.Popen]:
    """Start ``commands``; give each signal once every process waits for it (prints ``ready``)."""
    procs = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    for signal in signals:
        for proc in procs:
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                raise AssertionError(line + proc.communicate()[1])
        signal.touch()
    return procs


def test_two_writers_racing_for_the_same_keys_keep_exactly_one_row_each(store_url, tmp_path):
    count = 120
    commands = [[sys.executable, "-c", WRITER, store_url, name, str(tmp_path), str(count)] for name in "ab"]
    procs = _start_together(commands, [tmp_path / "open", tmp_path / "write"])
    won = {}
    for name, proc in zip(("a", "b"), procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        won[name] = set(json.loads(out.strip().splitlines()[-1]))
    assert won["a"].isdisjoint(won["b"])  # no key was inserted twice
    keys = {f"k{i:03d}" for i in range(count)}
    assert won["a"] | won["b"] == keys  # nor lost
    store = ResultStore(store_url, create=False)
    rows = store.rows()
    store.close()
    assert sorted(r["run_key"] for r in rows) == sorted(keys)
    for row in rows:  # the row that stayed is the one its writer was told it inserted
        assert row["run_key"] in won[row["sweep"]] and row["history"] == [{"writer": row["sweep"]}]


def _sweep_file(folder: Path, name: str, seeds: list[int]) -> Path:
    sweep = json.loads(json.dumps(TINY_SWEEP))
    sweep.update(name=name, seeds=seeds, models=sweep["models"][:1])
    path = folder / f"{name}.json"
    path.write_text(json.dumps(sweep))
    return path


def test_two_compare_sweeps_sharing_runs_fill_one_store_concurrently(store_url, tmp_path):
    go = tmp_path / "go"
    if "://" in store_url:  # the test server trusts local connections, so any password gets in
        store_url = store_url.replace("mixerlab@", "mixerlab:s3cret@", 1)
    commands = []
    # Sweep "a" runs seeds 0 and 1, sweep "b" seeds 1 and 2: the seed-1 run is in both.
    for name, seeds in (("a", [0, 1]), ("b", [1, 2])):
        config, out = _sweep_file(tmp_path, name, seeds), tmp_path / name
        options = ["--config", str(config), "--store", store_url, "--out", str(out), "--workers", "1"]
        commands.append([sys.executable, "-c", GATED_CLI, str(go), "compare", *options, "--no-report"])
    procs = _start_together(commands, [go])
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
        assert "already in" in out and "s3cret" not in out + err  # the log shows no password
    store = ResultStore(store_url, create=False)
    rows = store.rows()
    store.close()
    seeds = sorted(r["seed"] for r in rows)
    assert seeds == [0, 1, 2] and len({r["run_key"] for r in rows}) == 3
    assert {r["sweep"] for r in rows if r["seed"] != 1} == {"a", "b"}
    assert all(r["metric"] is not None and r["status"] == "finished" for r in rows)
