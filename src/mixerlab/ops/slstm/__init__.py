from mixerlab.ops.slstm.recurrent import slstm_recurrent, slstm_sequential
from mixerlab.ops.slstm.reference import SLSTMState, slstm_reference

__all__ = ["SLSTMState", "slstm_recurrent", "slstm_reference", "slstm_sequential"]
