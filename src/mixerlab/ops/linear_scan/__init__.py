from mixerlab.ops.linear_scan.packed import linear_scan_packed
from mixerlab.ops.linear_scan.recurrent import linear_scan_recurrent
from mixerlab.ops.linear_scan.reference import linear_scan_reference
from mixerlab.ops.linear_scan.scan import linear_scan_chunk, linear_scan_doubling

__all__ = [
    "linear_scan_chunk",
    "linear_scan_doubling",
    "linear_scan_packed",
    "linear_scan_recurrent",
    "linear_scan_reference",
]
