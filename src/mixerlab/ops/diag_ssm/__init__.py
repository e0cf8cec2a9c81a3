"""Diagonal complex state-space model (S4D), one input channel per state group.

Discretised with zero-order hold: ``h_t = dA * h_{t-1} + dB * x_t``, ``y_t = 2 Re(sum_m C_m h_{t,m})
+ D x_t`` with ``dA = exp(dt A)`` and ``dB = (dA - 1) / A`` (input matrix ``B = 1``), "On the
Parameterization and Initialization of Diagonal State Space Models" (arXiv:2206.11893).
"""

from mixerlab.ops.diag_ssm.conv import diag_ssm_conv, diag_ssm_kernel
from mixerlab.ops.diag_ssm.outer_chunk import diag_ssm_outer_chunk
from mixerlab.ops.diag_ssm.recurrent import diag_ssm_recurrent
from mixerlab.ops.diag_ssm.reference import diag_ssm_reference

__all__ = [
    "diag_ssm_conv",
    "diag_ssm_kernel",
    "diag_ssm_outer_chunk",
    "diag_ssm_recurrent",
    "diag_ssm_reference",
]
