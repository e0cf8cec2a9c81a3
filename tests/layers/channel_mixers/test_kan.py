"""KAN layers against per-edge evaluations; S-KAN's selection."""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import BSpline

from mixerlab.layers.channel_mixers.kan import KANLayer, SelectableKANLayer


def test_kan_layer_equals_sum_of_per_edge_splines():
    layer = KANLayer(3, 2, grid_size=4, spline_order=3).double()
    x = torch.rand(5, 3, dtype=torch.float64) * 2 - 1
    x[0] = torch.tensor([-5.0, 5.0, 9.0])  # beyond the extended grid: the SiLU branch only
    coef = layer.spline_coef.detach().reshape(3, 4 + 3, 2).numpy()
    knots = layer.knots.numpy()
    expected = np.zeros((5, 2))
    for i in range(3):
        for o in range(2):
            spline = BSpline(knots, coef[i, :, o], 3, extrapolate=False)(x[:, i].numpy())
            silu = torch.nn.functional.silu(x[:, i]).numpy() * layer.base_weight[i, o].item()
            expected[:, o] += np.nan_to_num(spline) + silu
    np.testing.assert_allclose(layer(x).detach().numpy(), expected + layer.bias.detach().numpy(), atol=1e-12)


def test_selectable_kan_selection_is_a_distribution_and_can_pick_one_space():
    layer = SelectableKANLayer(
        3, 4, ("bspline", "fourier", "rbf", "chebyshev"), grid_size=3, tau=1.0
    ).double()
    torch.testing.assert_close(layer.selection().sum(0), torch.ones(4, dtype=torch.float64))
    x = torch.randn(6, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.select_logits.zero_()
        layer.select_logits[1] = 1e4  # all weight on Fourier
    fourier_only = SelectableKANLayer(3, 4, ("fourier",), grid_size=3, tau=1.0).double()
    fourier_only.load_state_dict(
        {k: v for k, v in layer.state_dict().items() if k in fourier_only.state_dict() and "select" not in k},
        strict=False,
    )
    torch.testing.assert_close(layer(x), fourier_only(x))
