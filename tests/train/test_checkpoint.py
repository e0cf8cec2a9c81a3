"""Checkpoints: safetensors + JSON that load without running code; pickles refused unless trusted."""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mixerlab.cli.train  # noqa: F401  (adds the train command)
from mixerlab.cli.app import app
from mixerlab.errors import ConfigError
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trusting_pickle_checkpoints,
)

safetensors_torch = pytest.importorskip("safetensors.torch")


def _plant(marker: str) -> dict:
    Path(marker).touch()
    return {}


class Planted:
    """A pickle that creates ``marker`` when it is unpickled: what a malicious checkpoint does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant, (self.marker,))


def table_config() -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 120}},
            "model": {"name": "tabular", "dim": 8, "depth": 1},
            "train": {"epochs": 3, "batch_size": 32, "lr": 3e-3},
        },
    )


class Killed(Exception):
    pass


def kill_after_first_epoch(record):
    if record["epoch"] == 1:
        raise Killed


def _same(a, b) -> None:
    """Equal values of equal types, tensors bit for bit (dtype and shape too), NaN equal to NaN."""
    assert type(a) is type(b) or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def test_payload_round_trips_with_its_types(tmp_path):
    base = torch.randn(4, 6, dtype=torch.float64)
    payload = {
        "weights": {"w": base, "w_t": base.t(), "row": base[1], "half": torch.randn(3).to(torch.bfloat16)},
        "ints": {0: torch.arange(5), 1: torch.tensor(7, dtype=torch.int32)},
        "flags": torch.tensor([True, False]),
        "rng": torch.get_rng_state(),
        "betas": (0.9, 0.999),
        "floats": [1.5, float("inf"), float("-inf"), float("nan"), 1e-310],
        "misc": {"none": None, "yes": True, "text": "a.b", "__tensor__": "not a tensor", (1, 2): "key"},
        "empty": torch.zeros(0, 3),
        "big": 2**62,
    }
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    _same(payload, loaded)
    # Every tensor is its own copy, writable (the optimiser updates its moments in place).
    loaded["weights"]["w"].add_(1)
    assert not torch.equal(loaded["weights"]["w"], loaded["weights"]["w_t"].t())
    with pytest.raises(ConfigError, match=r"misc\.thing.*a object"):
        save_checkpoint(tmp_path / "d.pt", {"misc": {"thing": object()}})


def test_an_optimiser_state_round_trips_and_steps_the_same(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 5)).square().sum().backward()
        opt.step()
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict()})
    loaded = load_checkpoint(tmp_path / "c.pt")
    _same(opt.state_dict(), loaded["optimizer"])
    twin = torch.nn.Linear(5, 3)
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1.0)
    twin.load_state_dict(loaded["model"])
    twin_opt.load_state_dict(loaded["optimizer"])
    x = torch.randn(4, 5)
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_trainer_checkpoint_is_a_safetensors_file_with_the_weights_by_name(tmp_path):
    path = tmp_path / "run.pt"
    trainer = Trainer(table_config(), checkpoint_path=path, progress=False)
    trainer.fit()
    with safetensors_torch.safe_open(str(path), framework="pt") as f:
        names = set(f.keys())
        assert f.metadata()["format"] == "mixerlab.checkpoint"
    for name, value in trainer.model.state_dict().items():
        assert f"model.{name}" in names
        torch.testing.assert_close(safetensors_torch.load_file(path)[f"model.{name}"], value, rtol=0, atol=0)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "run.pt"
    if writer == "torch.save":
        torch.save({"model": Planted(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps({"model": Planted(str(marker))}))
    with pytest.raises(ConfigError, match="trust-checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "trust_pickle=True" in str(err.value)
    # Through the trainer too (it reads the checkpoint before training).
    with pytest.raises(ConfigError, match="pickle"):
        Trainer(table_config(), checkpoint_path=path, progress=False).fit()
    assert not marker.exists()
    if writer == "torch.save":
        # The flag is what lets it load: trusted, the pickle runs (here: creates the marker).
        load_checkpoint(path, trust_pickle=True)
        assert marker.exists()


def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epoch 3, loss 0.2\n")
    with pytest.raises(ConfigError, match="not a mixerlab checkpoint"):
        load_checkpoint(path)
    assert load_checkpoint(tmp_path / "missing.pt") is None


def test_a_trusted_pickle_checkpoint_resumes_exactly_and_is_then_rewritten_safely(tmp_path):
    whole = Trainer(table_config(), progress=False)
    expected = whole.fit()
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        Trainer(table_config(), checkpoint_path=path, progress=False, on_epoch=kill_after_first_epoch).fit()
    torch.save(load_checkpoint(path), path)  # the same checkpoint as an earlier mixerlab wrote it
    with pytest.raises(ConfigError, match="pickle"):
        Trainer(table_config(), checkpoint_path=path, progress=False).fit()
    with trusting_pickle_checkpoints():
        resumed = Trainer(table_config(), checkpoint_path=path, progress=False)
        result = resumed.fit()
    assert [h["loss"] for h in result.history] == [h["loss"] for h in expected.history]
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Outside the context it is refused again, but the file is now in the safe format.
    assert load_checkpoint(path)["done"] is True


def test_rng_state_restores_every_stream_through_a_checkpoint(tmp_path):
    np.random.seed(1)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})

    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3)

    first = draw()
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = draw()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_train_refuses_a_pickle_checkpoint_unless_trusted(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "old.pt"
    torch.save(Planted(str(marker)), ckpt)
    args = [
        "train",
        "--task",
        "synthetic_table",
        "--dim",
        "8",
        "--depth",
        "1",
        "--epochs",
        "1",
        "--set",
        "task.options.num_examples=64",
        "--no-progress",
        "--no-store",
        "--checkpoint",
        str(ckpt),
    ]
    runner = CliRunner()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--trust-checkpoint" in refused.output, refused.output
    assert str(ckpt) in " ".join(refused.output.split()) and not marker.exists()
    trusted = runner.invoke(app, [*args, "--trust-checkpoint"])
    assert trusted.exit_code == 0, trusted.output
    assert marker.exists()  # the option reached the loader
    assert load_checkpoint(ckpt)["done"] is True  # and the run wrote its checkpoint safely
