from mixerlab.ops.pararnn.newton import linear_scan, newton_solve, pararnn_newton
from mixerlab.ops.pararnn.recurrent import paragru_recurrent, paragru_recurrent_jacobian
from mixerlab.ops.pararnn.reference import pararnn_reference

__all__ = [
    "linear_scan",
    "newton_solve",
    "paragru_recurrent",
    "paragru_recurrent_jacobian",
    "pararnn_newton",
    "pararnn_reference",
]
