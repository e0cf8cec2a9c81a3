"""Structurally constrained recurrent network token mixer (``scrn``).

Shapes: ``x: [B, T, D]``; slow context units ``s: [B, T, S]`` (``S = state_dim``), fast hidden
units ``h: [B, T, H]`` (``H = hidden_dim``); carried state ``{"s": [B, S], "h": [B, H]}``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.scrn import scrn_recurrent, scrn_reference, scrn_scan
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "scrn",
    paper="Learning Longer Memory in Recurrent Neural Networks",
    arxiv="1412.7753",
    test_kwargs={"dim": 16, "hidden_dim": 12, "state_dim": 6, "chunk_size": 8},
    meta={
        "state": "H + S",
        "time": "O(T D (H + S) + T H^2)",
        "memory": "O(T (H + S))",
        "state_kind": "fixed",
    },
)
class SCRN(TokenMixer):
    """Structurally constrained recurrent network (SCRN), Mikolov et al., arXiv:1412.7753.

    A simple recurrent network with a second, slowly changing layer of context units whose
    recurrent matrix is fixed to ``alpha I`` (the structural constraint)::

        s_t = (1 - alpha) B x_t + alpha s_{t-1}
        h_t = sigmoid(P s_t + A x_t + R h_{t-1})
        y_t = W_o [h_t; s_t]

    The paper's output layer reads both (``U h_t + V s_t``); ``W_o`` maps them back to ``dim``.
    Paper's values: ``alpha = 0.95``, context layers of 10-40 units next to 40-100 hidden units.

    Modes: ``"scan"`` (the slow units by :func:`~mixerlab.ops.linear_scan.linear_scan_chunk`,
    their input to the fast units in one matmul, then a loop over ``R h_{t-1}`` only: the fast
    units are nonlinear in their own past and inherently sequential, the paper gives no parallel
    form) and ``"reference"`` (per-token loop). A one-token call takes the recurrent step.
    """

    modes = ("scan", "reference")

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        state_dim: int | None = None,
        alpha: float = 0.95,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        name = "scrn"
        hidden_dim = dim if hidden_dim is None else hidden_dim
        state_dim = max(dim // 4, 1) if state_dim is None else state_dim
        for field, value in (
            ("dim", dim),
            ("hidden_dim", hidden_dim),
            ("state_dim", state_dim),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(name, field, value)
        check(0.0 <= alpha < 1.0, name, "alpha", alpha, "expected a float in [0, 1)")
        self.dim, self.hidden_dim, self.state_dim = dim, hidden_dim, state_dim
        self.alpha, self.chunk_size = float(alpha), chunk_size
        self.B = nn.Linear(dim, state_dim, bias=False)
        self.A = nn.Linear(dim, hidden_dim)
        self.P = nn.Linear(state_dim, hidden_dim, bias=False)
        self.R = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.out_proj = nn.Linear(hidden_dim + state_dim, dim, bias=False)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        bx, ax = self.B(x), self.A(x)
        P, R = self.P.weight, self.R.weight
        sh = None if state is None else (state["s"], state["h"])
        if self.mode == "reference":
            s_seq, h_seq, (s, h) = scrn_reference(bx, ax, P, R, self.alpha, state=sh)
        elif x.shape[1] == 1:
            if sh is None:
                sh = (bx.new_zeros(x.shape[0], self.state_dim), ax.new_zeros(x.shape[0], self.hidden_dim))
            s, h = scrn_recurrent(bx[:, 0], ax[:, 0], P, R, self.alpha, sh)
            s_seq, h_seq = s[:, None], h[:, None]
        else:
            s_seq, h_seq, (s, h) = scrn_scan(bx, ax, P, R, self.alpha, state=sh, chunk_size=self.chunk_size)
        return self.out_proj(torch.cat([h_seq, s_seq], dim=-1)), {"s": s, "h": h}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        return {
            "s": torch.zeros(batch_size, self.state_dim, **f),
            "h": torch.zeros(batch_size, self.hidden_dim, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return self.state_dim + self.hidden_dim
