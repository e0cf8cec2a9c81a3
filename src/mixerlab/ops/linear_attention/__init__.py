"""Gated linear attention: a matrix state with a diagonal decay, ``S_t = diag(a_t) S_{t-1} + k_t^T v_t``,
read by ``o_t = q_t S_t``.

One op covers the family: ``a_t = 1`` (linear attention, arXiv:2006.16236), a fixed scalar per head
(retention, arXiv:2307.08621) or a data-dependent vector over key channels (GLA, arXiv:2312.06635).
Decays are passed as ``log_decay`` (``log a_t <= 0``).
"""

from mixerlab.ops.linear_attention.chunk import linear_attention_chunk
from mixerlab.ops.linear_attention.noncausal import (
    linear_attention_noncausal_parallel,
    linear_attention_noncausal_reference,
)
from mixerlab.ops.linear_attention.recurrent import linear_attention_recurrent
from mixerlab.ops.linear_attention.reference import linear_attention_reference

__all__ = [
    "linear_attention_chunk",
    "linear_attention_noncausal_parallel",
    "linear_attention_noncausal_reference",
    "linear_attention_recurrent",
    "linear_attention_reference",
]
