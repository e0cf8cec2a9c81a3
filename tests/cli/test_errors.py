"""User errors end as one line naming the field, exit code 2, no traceback, nothing created.

Every case goes through the command line as a user types it; ``--debug`` (or MIXERLAB_DEBUG=1)
brings the traceback back for bug reports.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import mixerlab.cli.compare
import mixerlab.cli.report
import mixerlab.cli.speed
import mixerlab.cli.train  # noqa: F401  (each module adds its command)
from mixerlab.bench.store import ResultStore
from mixerlab.cli.app import app

runner = CliRunner()


def _store_with_rows(path, n: int = 40) -> None:
    store = ResultStore(path)
    for i in range(n):
        # Long histories make the file span many pages, so a cut or a scribble hits a table page.
        store.write(
            {
                "run_key": f"k{i}",
                "sweep": "s",
                "task": "mqar",
                "mixer": "attention",
                "history": ["x" * 200] * 20,
            }
        )
    store.close()


@pytest.fixture
def files(tmp_path):
    (tmp_path / "text.sqlite").write_text("run_key,metric\nabc,0.5\n")
    (tmp_path / "bad.yaml").write_text("task: {name: mqar\n")
    good = tmp_path / "good.sqlite"
    _store_with_rows(good)
    data = good.read_bytes()
    (tmp_path / "truncated.sqlite").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[4096 : 4096 * 3] = b"\xff" * (4096 * 2)  # pages 2-3: b-tree pages of the runs table
    (tmp_path / "corrupt.sqlite").write_bytes(bytes(corrupt))
    (tmp_path / "empty.sqlite").write_bytes(b"")
    return tmp_path


CASES = [
    # (arguments, the field the message names)
    (["compare", "--tiny", "--lrs", "-1"], "lrs"),
    (["compare", "--tiny", "--lrs", "fast"], "lrs"),
    (["compare", "--tiny", "--mixers", "attention,nope"], "models='nope'"),
    (["compare", "--tiny", "--widths", "0"], "widths"),
    (["compare", "--tiny", "--workers", "0"], "workers"),
    (["compare", "--tiny", "--workers", "abc"], "--workers"),
    (["compare", "--tiny", "--set", "train.epochz=2"], "epochz"),
    (["compare", "--tiny", "--executor", "dask"], "executor='dask'"),
    (["compare", "--tiny", "--ray-address", "auto"], "ray_address='auto'"),
    (["compare", "--tiny", "--set", "train.loggers=[wandb]"], "loggers='wandb'"),
    (["compare", "--tiny", "--set", "train.lr"], "assignment"),
    (["compare", "--tiny", "--mixers", '{"name": "attention", "num_heads": 3}'], "num_heads"),
    (["compare", "--config", "missing.yaml"], "path='missing.yaml'"),
    (["compare", "--config", "bad.yaml"], "path='bad.yaml'"),
    (["compare", "--tiny", "--store", "text.sqlite"], "store='text.sqlite'"),
    (["compare", "--tiny", "--store", "truncated.sqlite"], "store='truncated.sqlite'"),
    (["compare", "--tiny", "--store", "nosuchdb://host/db"], "store='nosuchdb://host/db'"),
    (["compare", "--tiny", "--store", "postgresql://nobody@127.0.0.1:9/none"], "store="),
    (["train", "--lr", "-1", "--no-store"], "lr=-1.0"),
    (["train", "--mixer", "{bad json", "--no-store"], "mixer='{bad json'"),
    (["train", "--mixer", "nope", "--no-store"], "name='nope'"),
    (["train", "--max-steps", "0", "--no-store"], "max_steps"),
    (["train", "--set", "train.loggers=[{name: tensorboard, logdir: x}]", "--no-store"], "logdir"),
    (["train", "--config", "missing.json"], "path='missing.json'"),
    (["train", "--store", "text.sqlite"], "store='text.sqlite'"),
    (["report", "--store", "missing.sqlite"], "store='missing.sqlite'"),
    (["report", "--store", "text.sqlite"], "store='text.sqlite'"),
    (["report", "--store", "truncated.sqlite"], "store='truncated.sqlite'"),
    (["report", "--store", "corrupt.sqlite"], "store='corrupt.sqlite'"),
    (["report", "--store", "empty.sqlite"], "store='empty.sqlite'"),
    (["report", "--store", "good.sqlite", "--sweep", "nope"], "sweep='nope'"),
    (["report", "--store", "good.sqlite", "--task", "nope"], "task='nope'"),
    (["report", "--store", "good.sqlite", "--group-by", "model.nope"], "group_by"),
    (["speed", "--mixers", "nope"], "mixers='nope'"),
    (["speed", "--lengths", "abc"], "lengths='abc'"),
    (["speed", "--from-json", "missing.json"], "from_json"),
]


@pytest.mark.parametrize(("args", "field"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_user_error_is_one_line_naming_the_field_with_exit_code_2(files, monkeypatch, args, field):
    monkeypatch.chdir(files)
    monkeypatch.delenv("MIXERLAB_DEBUG", raising=False)
    before = sorted(p.name for p in files.iterdir())
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], result.stderr
    assert "Traceback" not in result.output
    # Checked before anything runs: no store, report folder or run folder was created.
    assert sorted(p.name for p in files.iterdir()) == before


def test_report_on_a_damaged_store_leaves_the_file_as_it_was(files, monkeypatch):
    monkeypatch.chdir(files)
    for name in ("text.sqlite", "truncated.sqlite", "corrupt.sqlite"):
        data = (files / name).read_bytes()
        assert runner.invoke(app, ["report", "--store", name]).exit_code == 2
        assert (files / name).read_bytes() == data


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(files, monkeypatch, how):
    monkeypatch.chdir(files)
    args = ["report", "--store", "missing.sqlite"]
    if how == "flag":
        result = runner.invoke(app, ["--debug", *args])
    else:
        result = runner.invoke(app, args, env={"MIXERLAB_DEBUG": "1"})
    assert result.exit_code != 0
    assert result.exc_info is not None and "store='missing.sqlite'" in str(result.exception)
