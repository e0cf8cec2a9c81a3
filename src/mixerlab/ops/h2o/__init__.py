from mixerlab.ops.h2o.evict import h2o_evict
from mixerlab.ops.h2o.parallel import h2o_attention_parallel
from mixerlab.ops.h2o.reference import h2o_attention_reference

__all__ = ["h2o_attention_parallel", "h2o_attention_reference", "h2o_evict"]
