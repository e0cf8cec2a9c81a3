"""Parallel Gated Network token mixer (``pgn``), "PGN: The RNN's New Successor is Effective for
Long-Range Time Series Forecasting" (arXiv:2409.17703).

Shapes: ``x: [B, T, D]``; history filter ``[D, max_len - 1]`` (column ``j - 1`` weights the input
``j`` steps back); carried history ``[B, S, D]`` (every input seen so far, ``S <= max_len``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.long_conv import long_conv_fft, long_conv_recurrent, long_conv_reference
from mixerlab.registry import TOKEN_MIXERS


def _history_filter(weight: Tensor) -> Tensor:
    """HIE as a causal long-convolution filter ``[max_len, D]``: tap 0 is zero, because the current
    token enters through the gate, not the history; tap ``j`` is ``weight[:, j - 1]``."""
    return F.pad(weight.T, (0, 0, 1, 0))


@TOKEN_MIXERS.register(
    "pgn",
    paper="PGN: The RNN's New Successor is Effective for Long-Range Time Series Forecasting",
    arxiv="2409.17703",
    test_kwargs={"dim": 16, "max_len": 40},
    meta={
        "state": "T D (every input so far, T <= max_len)",
        "time": "O(T log T D + T D^2)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class ParallelGatedNetwork(TokenMixer):
    """PGN, "The RNN's New Successor is Effective for Long-Range Time Series Forecasting" arXiv:2409.17703.

    The Historical Information Extraction (HIE) layer reads every previous input directly (an
    information path of length 1), then a gate fuses it with the current input::

        H_t = b_H + sum_{j=1}^{t-1} w_j * x_{t-j}          (HIE: linear layer over the history)
        g_t = sigmoid(W_g [x_t; H_t] + b_g)      c_t = tanh(W_c [x_t; H_t] + b_c)
        o_t = g_t * H_t + (1 - g_t) * c_t        y_t = W_out o_t

    The authors' HIE is a convolution whose window is the whole input length minus one, applied
    to each variable separately; here it is a per-channel (depthwise) causal filter of length
    ``max_len - 1``, so each channel aggregates its own history and the gate mixes channels. As in
    the paper the window is fixed: sequences (all calls on one state together) may be at most
    ``max_len`` tokens long, and longer ones are an error rather than a silently truncated
    history. The state is the history itself, ``{"history": [B, S, D]}``.

    Modes: ``"fft"`` (HIE as one FFT convolution, default) and ``"reference"`` (per-step loop).
    """

    modes = ("fft", "reference")

    def __init__(self, dim: int, max_len: int = 2048, bias: bool = False) -> None:
        super().__init__()
        check_positive_int("pgn", "dim", dim)
        check_positive_int("pgn", "max_len", max_len)
        check(max_len >= 2, "pgn", "max_len", max_len, "expected >= 2")
        self.dim, self.max_len = dim, max_len
        self.hie_weight = nn.Parameter(torch.empty(dim, max_len - 1))
        self.hie_bias = nn.Parameter(torch.empty(dim))
        self.reset_parameters()  # drawn before the projections, as always: seeded weights unchanged
        self.gate_proj = nn.Linear(2 * dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = (self.max_len - 1) ** -0.5  # nn.Conv1d's default init for the authors' HIE convolution
        self.hie_weight.uniform_(-bound, bound)
        self.hie_bias.uniform_(-bound, bound)

    def _check_length(self, total: int) -> None:
        if total > self.max_len:
            raise ConfigError(
                "pgn",
                "sequence length",
                total,
                f"PGN's history layer spans max_len={self.max_len} tokens; build it with a larger max_len",
            )

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        past = x[:, :0] if state is None else state["history"].to(x.dtype)
        self._check_length(past.shape[1] + x.shape[1])
        # H_t over past and new inputs; the history layer is a causal convolution with taps
        # k_0 = 0, k_j = w_j, so the long-convolution ops compute it
        full = torch.cat([past, x], dim=1)  # [B, S + T, D]
        k, S = _history_filter(self.hie_weight), past.shape[1]
        if self.mode == "reference":
            hist = long_conv_reference(full, k, start=S)
        elif x.shape[1] == 1 and S > 0:
            hist = long_conv_recurrent(full, k)[:, None]
        else:
            hist = long_conv_fft(full, k, start=S)
        hist = hist + self.hie_bias
        gate, cand = self.gate_proj(torch.cat([x, hist], dim=-1)).chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        o = gate * hist + (1 - gate) * torch.tanh(cand)
        return self.out_proj(o), {"history": full}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"history": torch.zeros(batch_size, 0, self.dim, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        self._check_length(seq_len)
        return seq_len * self.dim
