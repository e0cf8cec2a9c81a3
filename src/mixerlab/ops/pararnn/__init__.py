from mixerlab.ops.pararnn.newton import newton_solve, pararnn_newton
from mixerlab.ops.pararnn.recurrent import paragru_recurrent, paragru_recurrent_jacobian
from mixerlab.ops.pararnn.reference import pararnn_reference

__all__ = [
    "newton_solve",
    "paragru_recurrent",
    "paragru_recurrent_jacobian",
    "pararnn_newton",
    "pararnn_reference",
]
