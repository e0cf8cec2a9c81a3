from mixerlab.ops.attention.chunk import attention_local_chunk
from mixerlab.ops.attention.packed import attention_packed, document_positions
from mixerlab.ops.attention.parallel import attention_parallel
from mixerlab.ops.attention.reference import attention_reference

__all__ = [
    "attention_local_chunk",
    "attention_packed",
    "attention_parallel",
    "attention_reference",
    "document_positions",
]
