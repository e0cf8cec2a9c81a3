from mixerlab.ops.mla.parallel import mla_parallel
from mixerlab.ops.mla.reference import mla_reference

__all__ = ["mla_parallel", "mla_reference"]
