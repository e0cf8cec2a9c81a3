from mixerlab.ops.block_scan.recurrent import block_scan_recurrent
from mixerlab.ops.block_scan.reference import block_scan_reference
from mixerlab.ops.block_scan.scan import block_scan_chunk, block_scan_doubling

__all__ = ["block_scan_chunk", "block_scan_doubling", "block_scan_recurrent", "block_scan_reference"]
