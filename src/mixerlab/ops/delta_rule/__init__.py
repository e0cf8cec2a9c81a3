"""The delta rule and the gated delta rule (DeltaNet arXiv:2406.06484, Gated DeltaNet arXiv:2412.06464)."""

from mixerlab.ops.delta_rule.chunk import delta_rule_chunk
from mixerlab.ops.delta_rule.recurrent import delta_rule_recurrent
from mixerlab.ops.delta_rule.reference import delta_rule_reference

__all__ = ["delta_rule_chunk", "delta_rule_recurrent", "delta_rule_reference"]
