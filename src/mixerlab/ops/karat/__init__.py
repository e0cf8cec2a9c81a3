from mixerlab.ops.karat.parallel import karat_parallel
from mixerlab.ops.karat.reference import karat_reference

__all__ = ["karat_parallel", "karat_reference"]
