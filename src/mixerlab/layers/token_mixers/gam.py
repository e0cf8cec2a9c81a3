"""Gated Associative Memory: ``gam`` (a causal local conv and a learned memory bank, fused by gates).

Shapes: ``x: [B, T, D]``; memory bank ``[S, D]`` with ``S = num_slots``; slot weights ``[B, T, S]``;
conv tail ``[B, W-1, D]`` with ``W = conv_size``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "gam",
    paper="Gated Associative Memory: A Parallel O(N) Architecture for Efficient Sequence Modeling",
    arxiv="2509.00605",
    test_kwargs={"dim": 16, "num_slots": 8, "conv_size": 3},
    meta={
        "state": "(W-1) D (conv tail)",
        "time": "O(T D (W + S + D))",
        "memory": "O(T S)",
        "state_kind": "fixed",
    },
)
class GatedAssociativeMemory(TokenMixer):
    """Gated Associative Memory (GAM): A Parallel O(N) Architecture for Sequences (arXiv:2509.00605).

    Two pathways fused by two sigmoid gates computed from the token::

        local_t  = sum_{j<W} c_j * x_{t-j} + b                    # causal depthwise conv
        global_t = softmax_s(x_t . M_s) M                        # read of a learned bank M: [S, D]
        y_t      = sigmoid(x_t W_l + b_l) * local_t + sigmoid(x_t W_g + b_g) * global_t

    The memory bank is a parameter shared by all positions, so the global pathway is per-token
    (content-based, no mixing across time) and the mixer is causal by construction; only the
    convolution reads the past, and the state is its tail ``{"conv": [B, W-1, D]}``. Defaults
    follow the author's code: ``conv_size=3`` (an ``nn.Conv1d``, initialised as one:
    :class:`~mixerlab.layers.short_conv.ShortConv`), 512 slots (Xavier-initialised), unscaled
    dot-product scores, no output projection. Modes: ``"conv"`` (the fast short conv) and
    ``"reference"`` (per-step tap sums).
    """

    modes = ("conv", "reference")

    def __init__(self, dim: int, num_slots: int = 512, conv_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        name = "gam"
        for field, value in (("dim", dim), ("num_slots", num_slots), ("conv_size", conv_size)):
            check_positive_int(name, field, value)
        self.dim, self.num_slots, self.conv_size = dim, num_slots, conv_size
        self.conv = ShortConv(dim, conv_size, bias=bias, owner=name)
        load_legacy_conv_keys(self, "conv")
        self.memory = nn.Parameter(torch.empty(num_slots, dim))
        self.reset_parameters()  # drawn before gate_proj, as always: seeded weights unchanged
        self.gate_proj = nn.Linear(dim, 2 * dim, bias=bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The memory slots, Xavier-uniform (conv and gates initialise themselves)."""
        nn.init.xavier_uniform_(self.memory)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        local, tail = self.conv(
            x, None if state is None else state["conv"], reference=self.mode == "reference"
        )
        weights = torch.softmax(x @ self.memory.T, dim=-1)  # [B, T, S]
        retrieved = weights @ self.memory  # [B, T, D]
        g_local, g_global = torch.sigmoid(self.gate_proj(x)).chunk(2, dim=-1)
        return g_local * local + g_global * retrieved, {"conv": tail}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"conv": self.conv.init_state(batch_size, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return self.conv.state_size()
