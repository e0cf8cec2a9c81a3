"""Structurally constrained recurrent network (SCRN), arXiv:1412.7753: reference loop, scan, one step."""

from mixerlab.ops.scrn.recurrent import scrn_recurrent
from mixerlab.ops.scrn.reference import scrn_reference
from mixerlab.ops.scrn.scan import scrn_scan

__all__ = ["scrn_recurrent", "scrn_reference", "scrn_scan"]
