"""Log-linear attention over the Mamba-2 recurrence: a Fenwick-tree partition of the prefix into
``O(log T)`` buckets, each with its own state and a data-dependent weight (arXiv:2506.04761)."""

from mixerlab.ops.log_linear.chunk import log_linear_chunk
from mixerlab.ops.log_linear.reference import bucket_level, log_linear_reference, num_levels_after

__all__ = ["bucket_level", "log_linear_chunk", "log_linear_reference", "num_levels_after"]
