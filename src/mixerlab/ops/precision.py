"""The dtype in which an operator's sensitive part runs, given the layer's dtype.

Half-precision types have no complex numbers, and on the CPU no FFT or triangular solve; they also
keep only 8 (bfloat16) or 11 (float16) mantissa bits, too few for a state carried over thousands
of steps. Operators that need any of these run that part in float32 and return to the layer's
dtype for the projections around it, as mixed-precision training does with its master copies.
"""

from __future__ import annotations

import torch

_HALF = (torch.bfloat16, torch.float16)


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision ``dtype``, else ``dtype`` itself."""
    return torch.float32 if dtype in _HALF else dtype


def widen(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor in its :func:`wide_dtype` (no copy when it already is)."""
    return tuple(t.to(wide_dtype(t.dtype)) for t in tensors)
