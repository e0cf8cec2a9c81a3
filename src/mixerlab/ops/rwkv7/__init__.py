"""RWKV-7's generalised delta rule: a diagonal-plus-rank-one state transition (arXiv:2503.14456).

The chunked and one-step forms take the transition in its general form, so Kimi Delta Attention
(``ops.kda``) and Comba (``ops.comba``) run on them too.
"""

from mixerlab.ops.rwkv7.chunk import rwkv7_chunk
from mixerlab.ops.rwkv7.recurrent import rwkv7_recurrent
from mixerlab.ops.rwkv7.reference import rwkv7_reference

__all__ = ["rwkv7_chunk", "rwkv7_recurrent", "rwkv7_reference"]
