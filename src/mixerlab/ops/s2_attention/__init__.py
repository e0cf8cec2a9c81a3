from mixerlab.ops.s2_attention.parallel import s2_attention_parallel, s2_groups
from mixerlab.ops.s2_attention.reference import s2_attention_reference

__all__ = ["s2_attention_parallel", "s2_attention_reference", "s2_groups"]
