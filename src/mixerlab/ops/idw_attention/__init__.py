from mixerlab.ops.idw_attention.parallel import idw_attention_parallel, visible_keys
from mixerlab.ops.idw_attention.reference import idw_attention_reference

__all__ = ["idw_attention_parallel", "idw_attention_reference", "visible_keys"]
