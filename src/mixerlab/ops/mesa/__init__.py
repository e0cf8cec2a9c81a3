"""The Mesa layer's operator (MesaNet, arXiv:2506.05233): at every step, the output of the ridge
regression fitted to all past (decayed) key-value pairs.

``mesa_reference`` is the per-step loop with an exact solve, ``mesa_chunk`` the training form
(chunked statistics, one batched Cholesky solve, the GLA chunk op), ``mesa_recurrent`` one step.
"""

from mixerlab.ops.mesa.chunk import mesa_chunk
from mixerlab.ops.mesa.recurrent import mesa_recurrent
from mixerlab.ops.mesa.reference import mesa_reference

__all__ = ["mesa_chunk", "mesa_recurrent", "mesa_reference"]
