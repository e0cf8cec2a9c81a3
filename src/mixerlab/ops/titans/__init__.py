"""Titans' neural long-term memory (arXiv:2501.00663): reference loop and chunked form."""

from mixerlab.ops.titans.chunk import titans_chunk
from mixerlab.ops.titans.reference import titans_reference

__all__ = ["titans_chunk", "titans_reference"]
