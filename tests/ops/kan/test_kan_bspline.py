"""B-spline bases: equal to scipy's independent implementation, partition of unity on the grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from mixerlab.ops.kan import bspline_basis, bspline_knots, chebyshev_basis, fourier_basis, rbf_basis


@pytest.mark.parametrize(("grid_size", "order"), [(5, 3), (4, 1), (7, 2), (3, 0)])
def test_matches_scipy_design_matrix(grid_size, order):
    knots = bspline_knots(grid_size, order, -1.0, 2.0, dtype=torch.float64)
    x = torch.linspace(-0.999, 1.999, 57, dtype=torch.float64)
    ours = bspline_basis(x.unsqueeze(-1), knots, order).squeeze(-2)  # [57, G + k]
    theirs = BSpline.design_matrix(x.numpy(), knots.numpy(), order).toarray()
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)


def test_partition_of_unity_inside_and_zero_far_outside():
    knots = bspline_knots(5, 3, -1.0, 1.0, dtype=torch.float64)
    x = torch.rand(4, 3, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(bspline_basis(x, knots, 3).sum(-1), torch.ones(4, 3, dtype=torch.float64))
    far = torch.tensor([[-5.0, 5.0]], dtype=torch.float64)
    assert bspline_basis(far, knots, 3).abs().sum() == 0


def test_other_bases_closed_forms():
    x = torch.tensor([0.3, -1.2], dtype=torch.float64)
    f = fourier_basis(x, 2)
    torch.testing.assert_close(
        f[0], torch.tensor([np.cos(0.3), np.cos(0.6), np.sin(0.3), np.sin(0.6)]).double()
    )
    u = torch.tanh(x)
    c = chebyshev_basis(x, 3)
    torch.testing.assert_close(c[..., 3], 4 * u**3 - 3 * u)  # T_3(u) = cos(3 arccos u)
    r = rbf_basis(torch.tensor([0.0], dtype=torch.float64), 5, -2.0, 2.0)
    assert r.argmax() == 2 and float(r.max()) == 1.0
