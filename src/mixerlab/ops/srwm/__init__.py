"""The self-referential weight matrix, arXiv:2202.05780."""

from mixerlab.ops.srwm.recurrent import srwm_recurrent, srwm_step
from mixerlab.ops.srwm.reference import srwm_reference

__all__ = ["srwm_recurrent", "srwm_reference", "srwm_step"]
