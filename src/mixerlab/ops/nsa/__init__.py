from mixerlab.ops.nsa.parallel import nsa_parallel
from mixerlab.ops.nsa.reference import nsa_reference

__all__ = ["nsa_parallel", "nsa_reference"]
