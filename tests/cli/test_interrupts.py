"""Ctrl-C on a running sweep or training, as a terminal sends it (SIGINT to the whole process group).

The first stops cleanly within seconds: exit code 130, a one-line message on how to resume,
finished runs in the store, the running runs' checkpoints kept, no process left behind. The
second stops at once, still leaving no process behind. Processes are found through /proc by
their session (each command starts in a new one, as a terminal's foreground job would).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixerlab.bench.store import ResultStore

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc"
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MIXERLAB_DEBUG": "0"}


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after "pid (comm)", or None for a process that is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (exited, not yet reaped by init) is gone."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def session_members(sid: int) -> set[int]:
    """Live processes whose session is ``sid``."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[3]) == sid and fields[0] != "Z":
                members.add(int(entry.name))
    return members


def _rows(store: Path) -> list[dict]:
    if not store.exists():
        return []
    try:
        return ResultStore(store, create=False).rows()
    except Exception:  # the file may be mid-creation
        return []


def _start(args: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mixerlab.cli.main", *args]
    return subprocess.Popen(
        cmd, env=ENV, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def _wait_for(condition, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _interrupt(proc: subprocess.Popen, times: int) -> float:
    """Send Ctrl-C ``times`` times to the process group; seconds until the command exited."""
    started = time.monotonic()
    for i in range(times):
        os.killpg(proc.pid, signal.SIGINT)
        if i + 1 < times:
            time.sleep(0.3)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return time.monotonic() - started


def _no_process_left(sid: int) -> None:
    deadline = time.monotonic() + 5  # the resource tracker exits once it reads the parent's EOF
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_members(sid) == set(), "processes left behind"


def _sweep_args(out: Path) -> list[str]:
    # Runs of a few seconds each, so the Ctrl-C lands while two are training.
    return [
        "compare", "--tiny", "--out", str(out), "--workers", "2", "--no-report",
        "--set", "seeds=[0,1,2]", "--set", "train.epochs=150",
    ]  # fmt: skip


@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_stops_a_sweep_cleanly_and_leaves_no_process(tmp_path, times):
    out, log = tmp_path / "runs", tmp_path / "log.txt"
    store = out / "results.sqlite"
    proc = _start(_sweep_args(out), log)
    try:
        _wait_for(lambda: len(_rows(store)) >= 1 and len(session_members(proc.pid)) >= 3, proc, log)
        time.sleep(1.0)  # the next runs are now training (and past their first checkpoint)
        workers = session_members(proc.pid) - {proc.pid}
        before = {r["run_key"]: r["metric"] for r in _rows(store)}
        seconds = _interrupt(proc, times)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode == 130, text
    assert seconds < 15, f"took {seconds:.1f}s to stop"
    assert "Traceback" not in text
    message = [line for line in text.splitlines() if line.startswith("interrupted")]
    assert len(message) == 1 and "same command" in message[0], text
    _no_process_left(proc.pid)
    assert len(workers) >= 2 and not any(alive(pid) for pid in workers)
    after = {r["run_key"]: r["metric"] for r in _rows(store)}
    assert len(after) < 6 and all(after[k] == v for k, v in before.items())
    if times == 1:
        # The runs that were stopped keep their last checkpoint, and the same command resumes.
        assert list((out / "checkpoints").glob("*.pt")), text
        done = subprocess.run(
            [sys.executable, "-m", "mixerlab.cli.main", *_sweep_args(out)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{len(after)} already in" in done.stdout and "resumed from" not in done.stderr
        assert len(_rows(store)) == 6


def test_ctrl_c_stops_training_keeping_its_checkpoint_and_the_same_command_resumes(tmp_path):
    store, log = tmp_path / "runs" / "results.sqlite", tmp_path / "log.txt"
    args = [
        "train", "--store", str(store), "--no-progress", "--mixer", '{"name": "attention", "num_heads": 2}',
        "--dim", "16", "--depth", "1", "--epochs", "40", "--max-steps", "100000",
        "--set", "task.options={vocab_size: 16, seq_len: 16, num_kv_pairs: [2], num_train: 512}",
        "--set", "train.target_metric=null",
    ]  # fmt: skip
    proc = _start(args, log)
    try:
        _wait_for(lambda: "epoch 2/" in log.read_text(), proc, log)
        seconds = _interrupt(proc, 1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode == 130 and seconds < 10, text
    assert "Traceback" not in text and text.strip().splitlines()[-1].startswith("interrupted: run the same")
    _no_process_left(proc.pid)
    assert _rows(store) == [] and len(list((store.parent / "checkpoints").glob("*.pt"))) == 1
    proc = _start(args, log)
    try:
        _wait_for(lambda: "epoch" in log.read_text(), proc, log)
        _interrupt(proc, 1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "resumed from" in log.read_text(), log.read_text()
