"""minGRU / minLSTM ("Were RNNs All We Needed?"): reference loops, log-space scan, one step."""

from mixerlab.ops.min_rnn.recurrent import mingru_recurrent, minlstm_recurrent
from mixerlab.ops.min_rnn.reference import mingru_reference, minlstm_reference
from mixerlab.ops.min_rnn.scan import log_space_scan, mingru_scan, minlstm_scan

__all__ = [
    "log_space_scan",
    "mingru_recurrent",
    "mingru_reference",
    "mingru_scan",
    "minlstm_recurrent",
    "minlstm_reference",
    "minlstm_scan",
]
