"""HyperLSTM (HyperNetworks, arXiv:1609.09106): reference loop and the loop on precomputed inputs."""

from mixerlab.ops.hyperlstm.loop import hyperlstm_loop
from mixerlab.ops.hyperlstm.reference import HyperLSTMWeights, hyperlstm_reference

__all__ = ["HyperLSTMWeights", "hyperlstm_loop", "hyperlstm_reference"]
