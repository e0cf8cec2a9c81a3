"""Selective state-space scan (Mamba's S6): reference loop, chunked scan, loop-free scan, one step."""

from mixerlab.ops.selective_scan.parallel import selective_scan_parallel
from mixerlab.ops.selective_scan.recurrent import selective_scan_recurrent
from mixerlab.ops.selective_scan.reference import selective_scan_reference
from mixerlab.ops.selective_scan.scan import selective_scan_chunk

__all__ = [
    "selective_scan_chunk",
    "selective_scan_parallel",
    "selective_scan_recurrent",
    "selective_scan_reference",
]
