"""HyperLSTM token mixer (``hyperlstm``): an LSTM whose weights a small LSTM rescales at every step.

Shapes: ``x: [B, T, D]``; main hidden width ``H = hidden_dim``, hypernetwork width
``N = hyper_dim``, embeddings ``z: [N_z]`` (``N_z = embed_dim``); carried state
``{"h", "c": [B, H], "hyper_h", "hyper_c": [B, N]}``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.hyperlstm import HyperLSTMWeights, hyperlstm_loop, hyperlstm_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "hyperlstm",
    paper="HyperNetworks",
    arxiv="1609.09106",
    test_kwargs={"dim": 16, "hidden_dim": 12, "hyper_dim": 6, "embed_dim": 3},
    meta={
        "state": "2 H + 2 N",
        "time": "O(T (D + H + N)(H + N) + T N_z H)",
        "memory": "O(T (H + N))",
        "state_kind": "fixed",
    },
)
class HyperLSTM(TokenMixer):
    """HyperLSTM, "HyperNetworks" (Ha, Dai & Le, arXiv:1609.09106).

    A small LSTM (``hyper_dim`` units) reads ``[h_{t-1}; x_t]`` and emits embeddings ``z_h, z_x,
    z_b`` (``embed_dim`` each) whose linear maps scale the rows of the main LSTM's recurrent and
    input matrices and give its bias, step by step (equations in :mod:`mixerlab.ops.hyperlstm.reference`);
    ``y_t = W_o h_t``. Paper's sizes: 1000 main units, 128 hyper units, ``N_z = 4`` (here
    ``hidden_dim = dim``, ``hyper_dim = max(dim // 8, 4)``, ``embed_dim = 4`` by default).

    Sequential: both LSTMs are nonlinear in their own past, so the paper defines no parallel
    form. Modes: ``"loop"`` (input-side products for all steps hoisted out of the loop) and
    ``"reference"`` (the per-step loop of the equations). The embeddings start as scales near
    one (``z`` biases one, ``d`` maps ``1 / N_z``), so a fresh HyperLSTM starts close to an LSTM.
    """

    modes = ("loop", "reference")

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        hyper_dim: int | None = None,
        embed_dim: int = 4,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        name = "hyperlstm"
        hidden_dim = dim if hidden_dim is None else hidden_dim
        hyper_dim = max(dim // 8, 4) if hyper_dim is None else hyper_dim
        for field, value in (
            ("dim", dim),
            ("hidden_dim", hidden_dim),
            ("hyper_dim", hyper_dim),
            ("embed_dim", embed_dim),
        ):
            check_positive_int(name, field, value)
        self.dim, self.hidden_dim, self.hyper_dim, self.embed_dim = dim, hidden_dim, hyper_dim, embed_dim
        f = {"device": device, "dtype": dtype}
        self.out_proj = nn.Linear(hidden_dim, dim, bias=False, **f)
        H, N, Z = hidden_dim, hyper_dim, embed_dim
        self.hyper_ih = nn.Parameter(torch.empty(4 * N, H + dim, **f))
        self.hyper_hh = nn.Parameter(torch.empty(4 * N, N, **f))
        self.hyper_bias = nn.Parameter(torch.empty(4 * N, **f))
        self.z_weight = nn.Parameter(torch.empty(3 * Z, N, **f))
        self.z_bias = nn.Parameter(torch.empty(2 * Z, **f))
        self.d_h = nn.Parameter(torch.empty(4 * H, Z, **f))
        self.d_x = nn.Parameter(torch.empty(4 * H, Z, **f))
        self.d_b = nn.Parameter(torch.empty(4 * H, Z, **f))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H, **f))
        self.weight_ih = nn.Parameter(torch.empty(4 * H, dim, **f))
        self.bias = nn.Parameter(torch.empty(4 * H, **f))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """LSTM weights uniform in ``+-1/sqrt(width)`` (``nn.LSTM``'s), embeddings near unit scales."""
        for params, width in (
            ((self.hyper_ih, self.hyper_hh, self.hyper_bias), self.hyper_dim),
            ((self.weight_hh, self.weight_ih), self.hidden_dim),
        ):
            for p in params:
                p.uniform_(-1 / math.sqrt(width), 1 / math.sqrt(width))
        nn.init.normal_(self.z_weight, std=0.01)
        nn.init.ones_(self.z_bias)
        nn.init.constant_(self.d_h, 1 / self.embed_dim)
        nn.init.constant_(self.d_x, 1 / self.embed_dim)
        nn.init.normal_(self.d_b, std=0.01)
        nn.init.zeros_(self.bias)

    def _weights(self) -> HyperLSTMWeights:
        return HyperLSTMWeights(*(getattr(self, name) for name in HyperLSTMWeights._fields))

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        op = hyperlstm_reference if self.mode == "reference" else hyperlstm_loop
        out, (h, c, hh, hc) = op(
            x, self._weights(), (state["h"], state["c"], state["hyper_h"], state["hyper_c"])
        )
        return self.out_proj(out), {"h": h, "c": c, "hyper_h": hh, "hyper_c": hc}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, N = self.hidden_dim, self.hyper_dim
        return {
            "h": torch.zeros(batch_size, H, **f),
            "c": torch.zeros(batch_size, H, **f),
            "hyper_h": torch.zeros(batch_size, N, **f),
            "hyper_c": torch.zeros(batch_size, N, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return 2 * (self.hidden_dim + self.hyper_dim)
