"""Univariate basis functions of Kolmogorov-Arnold layers: B-splines, rational functions, and the
Fourier / RBF / Chebyshev bases used by selectable and residual KANs. Functions only."""

from mixerlab.ops.kan.bases import chebyshev_basis, fourier_basis, rbf_basis
from mixerlab.ops.kan.bspline import bspline_basis, bspline_knots
from mixerlab.ops.kan.rational import (
    RATIONAL_INITS,
    rational_fused,
    rational_init,
    rational_reference,
    rational_second_moment,
)

__all__ = [
    "RATIONAL_INITS",
    "bspline_basis",
    "bspline_knots",
    "chebyshev_basis",
    "fourier_basis",
    "rational_fused",
    "rational_init",
    "rational_reference",
    "rational_second_moment",
    "rbf_basis",
]
