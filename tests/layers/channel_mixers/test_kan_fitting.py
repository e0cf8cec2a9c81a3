"""KANs fit pykan's classic f(x, y) = exp(sin(pi x) + y^2) on [-1, 1]^2.

Measured (``pytest tests/layers/channel_mixers/test_kan_fitting.py -q``, torch 2.13 CPU, 1 thread,
400 full-batch Adam steps on 1000 points, test on 1000 others; predicting the mean gives RMSE 1.36):
``kan`` [2 -> 5 -> 2], lr 1e-2: test RMSE 0.044; ``grkan`` [2 -> 16 -> 2], 2 groups, lr 3e-3: 0.089.
The thresholds leave a 2x margin for other seeds and platforms.
"""

from __future__ import annotations

import math

import pytest
import torch

import mixerlab


@pytest.fixture
def one_thread():
    # Tiny matmuls: extra threads only add contention on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)


@pytest.mark.parametrize(
    ("name", "kwargs", "lr", "max_rmse"),
    [
        ("kan", {"dim": 2, "hidden_dim": 5, "grid_size": 5}, 1e-2, 0.09),
        ("grkan", {"dim": 2, "hidden_dim": 16, "num_groups": 2}, 3e-3, 0.18),
    ],
)
def test_fits_exp_sin_plus_square(one_thread, name, kwargs, lr, max_rmse):
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.rand(1000, 2, generator=g) * 2 - 1, torch.rand(1000, 2, generator=g) * 2 - 1
    y_train, y_test = target(x_train), target(x_test)
    torch.manual_seed(0)
    model = mixerlab.create_channel_mixer(name, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(400):
        loss = (model(x_train)[:, 0] - y_train).square().mean()  # the first output is the prediction
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        rmse = float((model(x_test)[:, 0] - y_test).square().mean().sqrt())
    mean_rmse = float((y_test - y_train.mean()).square().mean().sqrt())
    assert rmse < max_rmse
    assert rmse < mean_rmse / 10, "must beat predicting the mean by a large factor"
