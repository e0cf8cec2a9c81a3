"""AdaMod: Adam whose per-element step sizes are bounded by their own exponential average."""

from __future__ import annotations

import torch
from torch import nn

from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.methods import create_method


def adamod_reference(p, grads, lrs, betas=(0.9, 0.999), beta3=0.999, eps=1e-8):
    """The paper's Algorithm 1, element by element."""
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    s = torch.zeros_like(p)
    p = p.clone()
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        eta = lr / (v_hat.sqrt() + eps)
        s = beta3 * s + (1 - beta3) * eta
        p = p - torch.minimum(eta, s) * m_hat
    return p


def test_adamod_follows_the_paper_under_the_trainers_schedule():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    method = create_method("adamod", {"beta3": 0.9, "grad_clip": None})
    model = method.wrap(layer)
    # The trainer's own optimiser and schedule: AdamW with weight decay, a changing learning rate.
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    start = layer.weight.detach().clone()
    grads, lrs = [], []
    for step in range(5):
        x = torch.randn(8, 4)
        optimizer.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        grads.append(layer.weight.grad.clone())
        lrs.append(optimizer.param_groups[0]["lr"])
        method.after_backward(model, step)
        optimizer.step()
        method.after_step(model, step)
        schedule.step()
        assert abs(method.last_lr - lrs[-1]) < 1e-6 * lrs[-1]
    want = adamod_reference(start, grads, lrs, beta3=0.9)
    torch.testing.assert_close(layer.weight.detach(), want, rtol=1e-5, atol=1e-6)
    assert not optimizer.state.get(layer.weight)  # AdamW never updated the model's parameters


def test_the_first_step_is_a_small_fraction_of_adams():
    # Adam's first step moves every element by ~lr; AdamMod's by (1 - beta3) of that.
    p = torch.ones(10)
    g = torch.randn(10)
    moved = (adamod_reference(p, [g], [0.1], beta3=0.99) - p).abs()
    torch.testing.assert_close(moved, torch.full_like(moved, 0.1 * 0.01), rtol=1e-4, atol=0)


def test_adamod_trains_through_the_trainer_and_resumes(tmp_path):
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 200}},
            "model": {"name": "tabular", "dim": 16, "depth": 1},
            "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3},
            "method": {"name": "adamod", "options": {"beta3": 0.99}},
        },
    )
    whole = Trainer(config, progress=False)
    before = {k: v.clone() for k, v in whole.model.state_dict().items()}
    result = whole.fit()
    assert result.status == "finished"
    assert any(not torch.equal(before[k], v) for k, v in whole.model.state_dict().items())
    assert whole.method.state_dict()["steps"] == result.steps
