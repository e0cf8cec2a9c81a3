"""Causal long convolution along time (a filter as long as the sequence), per channel.

Decoding a long convolution has no fixed-size state: output ``t`` reads every past input, so the
caller keeps the past inputs and ``long_conv_recurrent`` takes one dot product over them per step
(see :mod:`mixerlab.ops.long_conv.recurrent`).
"""

from mixerlab.ops.long_conv.fft import long_conv_fft
from mixerlab.ops.long_conv.recurrent import long_conv_recurrent
from mixerlab.ops.long_conv.reference import long_conv_reference
from mixerlab.ops.long_conv.toeplitz import TOEPLITZ_MAX_LEN, long_conv_toeplitz

__all__ = [
    "TOEPLITZ_MAX_LEN",
    "long_conv_fft",
    "long_conv_recurrent",
    "long_conv_reference",
    "long_conv_toeplitz",
]
