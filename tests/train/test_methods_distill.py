"""Distillation (teacher from a checkpoint or trained first) and guidance (CKA to a fixed guide)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.train.config import ModelConfig, TaskConfig
from mixerlab.train.methods import create_method
from mixerlab.train.methods.base import load_reference, save_reference
from mixerlab.train.methods.distill import soft_target_loss
from mixerlab.train.methods.guidance import linear_cka

sys.path.insert(0, str(Path(__file__).parent))  # the method tests' shared helpers (importlib mode)
from test_methods_support import objective, tiny_batch, tiny_model

TABLE = {"name": "synthetic_table", "options": {"num_examples": 120}}


def test_soft_targets_are_hintons_tempered_kl():
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.randint(4, (6,))
    T = 3.0
    p = torch.softmax(t / T, -1)
    want = (p * (p.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    torch.testing.assert_close(soft_target_loss(s, t, y, T), want)
    assert float(soft_target_loss(t, t, y, T)) == pytest.approx(0.0, abs=1e-6)
    # Ignored positions of a token task do not count.
    y2 = torch.tensor([[-100, 1], [2, -100]])
    s2, t2 = torch.randn(2, 2, 4), torch.randn(2, 2, 4)
    keep = y2 != -100
    torch.testing.assert_close(
        soft_target_loss(s2, t2, y2, T), soft_target_loss(s2[keep], t2[keep], y2[keep], T)
    )


def test_the_teacher_loads_safely_from_a_checkpoint(tmp_path):
    model_cfg = ModelConfig(name="tabular", dim=8, depth=1)
    teacher = load_reference(
        {"model": {"name": "tabular", "dim": 8, "depth": 1}, "task": TABLE, "seed": 3}, "t", "t"
    )
    path = tmp_path / "teacher.pt"
    save_reference(str(path), teacher, model_cfg, TaskConfig(**TABLE))
    from mixerlab.train.checkpoint import load_checkpoint

    assert set(load_checkpoint(path)) == {"model", "task", "state_dict"}  # safe format: no code runs
    loaded = load_reference({"checkpoint": str(path)}, "distill", "teacher")
    for a, b in zip(teacher.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_a_teacher_trained_first_leaves_the_callers_random_state_alone():
    state = torch.get_rng_state()
    method = create_method(
        "distill",
        {
            "teacher": {
                "model": {"name": "tabular", "dim": 8, "depth": 1},
                "task": TABLE,
                "train": {"epochs": 1},
            }
        },
    )
    assert torch.equal(state, torch.get_rng_state())
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_distillation_pulls_the_student_toward_the_teacher():
    teacher = tiny_model(depth=1)
    torch.manual_seed(5)
    student = tiny_model(depth=2)
    method = create_method(
        "distill", {"teacher": teacher, "alpha": 1.0, "feature_weight": 1.0, "feature_layers": [[2, 1]]}
    )
    model = method.wrap(student)
    batch = tiny_batch()
    with torch.no_grad():
        target = teacher(batch["inputs"])[0]

    def gap() -> float:
        with torch.no_grad():
            return float(soft_target_loss(model(batch["inputs"])[0], target, batch["targets"], 1.0))

    before = gap()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(30):
        opt.zero_grad()
        loss, _ = method.loss(model, batch, objective(), step)
        loss.backward()
        opt.step()
    assert gap() < 0.3 * before
    assert all(p.grad is None for p in teacher.parameters())
    with pytest.raises(ConfigError, match="distill.*feature_layers"):
        create_method("distill", {"teacher": teacher, "feature_weight": 1.0})


def test_cka_is_invariant_to_rotation_and_scale():
    x = torch.randn(50, 6)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert float(linear_cka(x, 3.0 * x @ q)) == pytest.approx(1.0, abs=1e-5)
    assert float(linear_cka(x, torch.randn(50, 4))) < 0.5


def test_guidance_aligns_the_model_with_the_fixed_guide():
    guide = tiny_model(depth=2, dim=8)
    frozen = {k: v.clone() for k, v in guide.state_dict().items()}
    torch.manual_seed(7)
    method = create_method("guidance", {"guide": guide, "weight": 10.0})
    model = method.wrap(tiny_model(depth=2))
    batch = tiny_batch(n=32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    method.loss(model, batch, objective(), 0)
    start = sum(method.last_cka)
    for step in range(25):
        opt.zero_grad()
        loss, _ = method.loss(model, batch, objective(), step)
        loss.backward()
        opt.step()
    assert sum(method.last_cka) > start  # closer to the guide, layer by layer
    assert all(torch.equal(frozen[k], v) for k, v in guide.state_dict().items())  # the guide never moves
