"""Recurrent token mixers: ``mingru`` and ``minlstm`` (parallel-scan minimal RNNs) and ``lstm``.

Shapes: ``x: [B, T, D]``; hidden states ``[B, T, H]`` with ``H = expand * D`` (min-RNNs) or
``H = hidden_dim`` (LSTM); carried state ``h, c: [B, H]``.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.lstm import lstm_fused, lstm_recurrent, lstm_reference
from mixerlab.ops.min_rnn import (
    mingru_recurrent,
    mingru_reference,
    mingru_scan,
    minlstm_recurrent,
    minlstm_reference,
    minlstm_scan,
)
from mixerlab.registry import TOKEN_MIXERS

_MIN_RNN_META = {
    "state": "H   (H = expand D)",
    "time": "O(T D H)",
    "memory": "O(T H)",
    "state_kind": "fixed",
}


class _MinRNN(TokenMixer):
    """Shared body of minGRU / minLSTM: one input projection to the pre-activations, a scan over
    time, an output projection ``H -> D``."""

    modes = ("scan", "reference")
    packed = "native"
    num_projections: int

    def __init__(self, name: str, dim: int, expand: int, chunk_size: int, bias: bool) -> None:
        super().__init__()
        for field, value in (("dim", dim), ("expand", expand), ("chunk_size", chunk_size)):
            check_positive_int(name, field, value)
        self.dim, self.hidden_dim, self.chunk_size = dim, expand * dim, chunk_size
        self.in_proj = nn.Linear(dim, self.num_projections * self.hidden_dim, bias=bias)
        self.out_proj = nn.Linear(self.hidden_dim, dim, bias=False)

    def _ops(self):
        raise NotImplementedError

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        reference_op, scan_op, step_op = self._ops()
        pre = self.in_proj(x).chunk(self.num_projections, dim=-1)  # each [B, T, H]
        h0 = None if state is None else state["h"]
        if self.mode == "reference":
            h, last = reference_op(*pre, state=h0)
        elif x.shape[1] == 1:
            h, last = step_op(*pre, state=h0)
        else:
            h, last = scan_op(*pre, state=h0, chunk_size=self.chunk_size)
        return self.out_proj(h), {"h": last}

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        """Packed documents (see :meth:`TokenMixer.forward_packed`) in one scan whose state restarts
        from zero at each document start (``resets`` of the scan). Mode ``reference``, and
        documents continuing from ``states`` (an initial state needs a log), run each alone."""
        lengths = self._check_packed(x, cu_seqlens, states)
        if self.mode == "reference" or states is not None:
            return self._forward_split(x, lengths, states)
        _, scan_op, _ = self._ops()
        ends = list(itertools.accumulate(lengths))
        resets = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        resets[[0, *ends[:-1]]] = True
        pre = self.in_proj(x).chunk(self.num_projections, dim=-1)  # each [1, T_total, H]
        h, _ = scan_op(*pre, chunk_size=self.chunk_size, resets=resets)
        return self.out_proj(h), [{"h": h[:, end - 1]} for end in ends]

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"h": torch.zeros(batch_size, self.hidden_dim, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return self.hidden_dim


@TOKEN_MIXERS.register(
    "mingru",
    paper="Were RNNs All We Needed?",
    arxiv="2410.01201",
    test_kwargs={"dim": 16, "expand": 2, "chunk_size": 8},
    meta=_MIN_RNN_META,
)
class MinGRU(_MinRNN):
    """minGRU, "Were RNNs All We Needed?" (arXiv:2410.01201).

    Gates depend on the input only, so the recurrence is linear in ``h`` and runs as a scan::

        z_t  = sigmoid(W_z x_t + b_z),   h~_t = g(W_h x_t + b_h)
        h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t,        y_t = W_o h_t

    with the paper's positive ``g(v) = v + 0.5 (v >= 0), sigmoid(v) (v < 0)`` of its log-space
    version. ``expand`` sets the hidden width ``H = expand * dim``; the cell of section 3 maps
    ``dim -> dim`` (``expand=1``, the default here) and the paper's language-model blocks widen it,
    which ``expand > 1`` reproduces. ``W_o`` maps ``H`` back to ``dim``.

    Modes: ``"scan"`` (the recurrence from the gates' logs as a blocked scan, 2x faster on CPU
    than the paper's ``logcumsumexp`` form, over chunks of ``chunk_size`` tokens with the state
    carried; see :mod:`mixerlab.ops.min_rnn.scan`) and
    ``"reference"`` (per-token loop). A one-token call takes the recurrent step. State:
    ``{"h": [B, H]}``.
    """

    num_projections = 2

    def __init__(self, dim: int, expand: int = 1, chunk_size: int = 256, bias: bool = True) -> None:
        super().__init__("mingru", dim, expand, chunk_size, bias)

    def _ops(self):
        return mingru_reference, mingru_scan, mingru_recurrent


@TOKEN_MIXERS.register(
    "minlstm",
    paper="Were RNNs All We Needed?",
    arxiv="2410.01201",
    test_kwargs={"dim": 16, "expand": 2, "chunk_size": 8},
    meta=_MIN_RNN_META,
)
class MinLSTM(_MinRNN):
    """minLSTM, "Were RNNs All We Needed?" (arXiv:2410.01201).

    Input-only gates, normalised so that the state stays on the scale of the candidates::

        f_t = sigmoid(W_f x_t + b_f),   i_t = sigmoid(W_i x_t + b_i),   h~_t = g(W_h x_t + b_h)
        f'_t = f_t / (f_t + i_t),       i'_t = i_t / (f_t + i_t)
        h_t = f'_t * h_{t-1} + i'_t * h~_t,             y_t = W_o h_t

    ``g``, ``expand``, modes and state as in :class:`MinGRU`.
    """

    num_projections = 3

    def __init__(self, dim: int, expand: int = 1, chunk_size: int = 256, bias: bool = True) -> None:
        super().__init__("minlstm", dim, expand, chunk_size, bias)

    def _ops(self):
        return minlstm_reference, minlstm_scan, minlstm_recurrent


@TOKEN_MIXERS.register(
    "lstm",
    paper="LSTM: A Search Space Odyssey (vanilla LSTM; Hochreiter & Schmidhuber 1997)",
    arxiv="1503.04069",
    test_kwargs={"dim": 16, "hidden_dim": 12},
    meta={"state": "2 H", "time": "O(T (D + H) H)", "memory": "O(T H)", "state_kind": "fixed"},
)
class LSTM(TokenMixer):
    """Classic LSTM, "LSTM: A Search Space Odyssey" (arXiv:1503.04069) as the reference paper.

    The cell of "Long Short-Term Memory" (Hochreiter & Schmidhuber, 1997, no arXiv id) with a
    forget gate, in the equations of Greff et al.'s vanilla LSTM without peepholes (their "NP"
    variant, on par with the full one), which is also ``torch.nn.LSTM``::

        [i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g),   h_t = sigmoid(o) * tanh(c_t)
        y_t = W_o h_t

    ``hidden_dim`` defaults to ``dim``; ``W_o`` maps it back to ``dim``. Initialisation is
    ``nn.LSTM``'s (uniform in +-1/sqrt(H), two bias vectors as in cuDNN/oneDNN).

    Modes: ``"fused"`` (``torch.lstm``, the oneDNN/cuDNN kernel behind ``nn.LSTM``) and
    ``"reference"`` (per-token loop). State: ``{"h": [B, H], "c": [B, H]}``.
    """

    modes = ("fused", "reference")

    def __init__(self, dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = dim if hidden_dim is None else hidden_dim
        check_positive_int("lstm", "dim", dim)
        check_positive_int("lstm", "hidden_dim", hidden_dim)
        self.dim, self.hidden_dim = dim, hidden_dim
        H = hidden_dim
        self.weight_ih = nn.Parameter(torch.empty(4 * H, dim))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(4 * H))
        self.bias_hh = nn.Parameter(torch.empty(4 * H))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(H, dim, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``nn.LSTM``'s init: everything uniform in ``[-1/sqrt(H), 1/sqrt(H)]``."""
        bound = 1.0 / math.sqrt(self.hidden_dim)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            p.uniform_(-bound, bound)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        op = lstm_fused
        if self.mode == "reference":
            op = lstm_reference
        elif x.shape[1] == 1:
            op = lstm_recurrent
        hc = None if state is None else (state["h"], state["c"])
        out, (h, c) = op(x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, state=hc)
        return self.out_proj(out), {"h": h, "c": c}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        return {
            "h": torch.zeros(batch_size, self.hidden_dim, **f),
            "c": torch.zeros(batch_size, self.hidden_dim, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return 2 * self.hidden_dim
