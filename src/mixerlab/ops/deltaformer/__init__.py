"""DeltaFormer: attention over delta-rule-corrected values (arXiv:2505.19488)."""

from mixerlab.ops.deltaformer.parallel import deltaformer_parallel
from mixerlab.ops.deltaformer.reference import deltaformer_reference

__all__ = ["deltaformer_parallel", "deltaformer_reference"]
