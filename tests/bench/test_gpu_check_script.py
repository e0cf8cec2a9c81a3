"""scripts/gpu_check.sh, the prepared GPU check: a clear refusal of an unknown stage, before it
installs or imports anything (its `tiny` stage runs every stage on a CPU in about 2 minutes, too
long for the suite; BENCHMARKS.md says how it was checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_sh_refuses_an_unknown_stage(tmp_path):
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "everything"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert not any(tmp_path.iterdir())  # refused before writing anything
    assert "unknown stage 'everything': expected fetch, check, extra or tiny" in done.stderr
