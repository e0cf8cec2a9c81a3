"""``train.compile``: validation, the "auto" rule, the eager fallback, and compiled == eager."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixerlab.errors import ConfigError
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train import compiled as compiled_module
from mixerlab.train.compiled import AUTO_MIN_STEPS, wants_compile


def tiny_config(**train) -> RunConfig:
    # 80 examples in batches of 32: two full batches and a short one (16) per epoch.
    return from_dict(
        RunConfig,
        {
            "task": {
                "name": "mqar",
                "options": {
                    "vocab_size": 16,
                    "seq_len": 16,
                    "num_kv_pairs": [2],
                    "num_train": 80,
                    "num_test": 16,
                },
            },
            "model": {"dim": 16, "depth": 1, "mixer": {"name": "attention", "num_heads": 2}},
            "train": {"epochs": 3, "batch_size": 32, "lr": 3e-3, **train},
        },
    )


@pytest.mark.parametrize("value", ["yes", "Auto", 1, 0.5, None])
def test_a_bad_compile_value_is_a_clear_error(value):
    with pytest.raises(ConfigError, match=r"compile.*true, false or \"auto\""):
        from_dict(RunConfig, {"train": {"compile": value}})


def test_compile_values_and_the_run_key():
    for value in (True, False, "auto"):
        assert from_dict(RunConfig, {"train": {"compile": value}}).train.compile == value
    # Off (the default) keeps the key runs had before the field existed; on is another run.
    assert tiny_config().key() == tiny_config(compile=False).key()
    assert tiny_config(compile=True).key() != tiny_config().key()


def test_auto_compiles_only_a_long_enough_budget():
    assert not wants_compile("auto", AUTO_MIN_STEPS - 1)
    assert wants_compile("auto", AUTO_MIN_STEPS)
    assert wants_compile(True, 1) and not wants_compile(False, 10**6)


class _FailingCompile(nn.Module):
    """Stands in for ``torch.compile(model)`` whose compiler gives up on the first call."""

    def forward(self, *args, **kwargs):
        from torch._dynamo.exc import TorchDynamoException

        raise TorchDynamoException("this graph cannot be compiled")


def test_a_failed_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    eager = Trainer(tiny_config(), progress=False)
    expected = eager.fit()
    monkeypatch.setattr(compiled_module.torch, "compile", lambda model, **kwargs: _FailingCompile())
    logged: list[str] = []
    trainer = Trainer(tiny_config(compile=True), progress=False, log=logged.append)
    with pytest.warns(RuntimeWarning, match="torch.compile failed") as caught:
        result = trainer.fit()
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    assert sum("torch.compile failed" in line for line in logged) == 1
    # The failed step was redone eagerly: the run is the eager run, step for step.
    assert result.steps == expected.steps and result.history == expected.history
    for a, b in zip(trainer.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow  # the first torch.compile in a process: 20-150 s on a shared 2-core machine
def test_compiled_training_matches_eager_and_does_not_recompile_per_epoch():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = Trainer(tiny_config(), progress=False).fit()
    graphs: list[int] = []
    trainer = Trainer(
        tiny_config(compile=True),
        progress=False,
        on_epoch=lambda record: graphs.append(counters["stats"]["unique_graphs"]),
    )
    result = trainer.fit()
    assert graphs[0] >= 1, "nothing was compiled"
    # Evaluation (eval mode, no_grad) and the short last batch run eagerly: no recompile after epoch 1.
    assert graphs == [graphs[0]] * len(graphs)
    assert result.steps == eager.steps and len(result.history) == len(eager.history)
    for got, want in zip(result.history, eager.history):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-5)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
