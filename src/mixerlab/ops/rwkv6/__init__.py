"""RWKV-6 ("Finch") time mixing: a diagonal-decay matrix state read before the current token's
update, plus a bonus ``u`` for the current token (Eagle and Finch, arXiv:2404.05892)."""

from mixerlab.ops.rwkv6.chunk import rwkv6_chunk
from mixerlab.ops.rwkv6.reference import rwkv6_recurrent, rwkv6_reference

__all__ = ["rwkv6_chunk", "rwkv6_recurrent", "rwkv6_reference"]
