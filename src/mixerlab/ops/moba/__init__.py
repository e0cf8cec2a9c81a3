from mixerlab.ops.moba.parallel import moba_parallel
from mixerlab.ops.moba.reference import moba_reference

__all__ = ["moba_parallel", "moba_reference"]
