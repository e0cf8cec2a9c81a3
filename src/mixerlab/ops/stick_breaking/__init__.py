"""Stick-breaking attention: each query breaks a unit stick over its keys, nearest first
(arXiv:2410.17980)."""

from mixerlab.ops.stick_breaking.parallel import stick_breaking_parallel
from mixerlab.ops.stick_breaking.reference import stick_breaking_reference

__all__ = ["stick_breaking_parallel", "stick_breaking_reference"]
