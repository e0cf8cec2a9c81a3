"""MemMamba's note pool (arXiv:2510.03279): summaries of salient tokens, read by attention."""

from mixerlab.ops.note_pool.parallel import note_pool_parallel
from mixerlab.ops.note_pool.recurrent import note_pool_recurrent
from mixerlab.ops.note_pool.reference import note_pool_reference

__all__ = ["note_pool_parallel", "note_pool_recurrent", "note_pool_reference"]
