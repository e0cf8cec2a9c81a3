"""The classic LSTM cell: reference loop, fused kernel, one step."""

from mixerlab.ops.lstm.fused import lstm_fused
from mixerlab.ops.lstm.recurrent import lstm_recurrent
from mixerlab.ops.lstm.reference import lstm_reference

__all__ = ["lstm_fused", "lstm_recurrent", "lstm_reference"]
