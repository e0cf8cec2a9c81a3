"""(Gated) DeltaProduct: several delta-rule (Householder) steps per token (arXiv:2502.10297)."""

from mixerlab.ops.deltaproduct.chunk import deltaproduct_chunk, deltaproduct_recurrent
from mixerlab.ops.deltaproduct.reference import deltaproduct_reference

__all__ = ["deltaproduct_chunk", "deltaproduct_recurrent", "deltaproduct_reference"]
