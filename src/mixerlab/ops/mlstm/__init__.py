from mixerlab.ops.mlstm.chunk import mlstm_chunk
from mixerlab.ops.mlstm.recurrent import mlstm_recurrent
from mixerlab.ops.mlstm.reference import MLSTMState, mlstm_reference

__all__ = ["MLSTMState", "mlstm_chunk", "mlstm_recurrent", "mlstm_reference"]
