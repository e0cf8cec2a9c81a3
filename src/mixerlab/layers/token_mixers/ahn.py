"""Sliding-window attention with a compressed memory of evicted tokens: ``ahn``.

Shapes: ``x: [B, T, D]``; queries/keys/values ``[B, T, H, K]``; per-token memory gates ``[B, T, H, 2]``
(log-decay, write strength); kept window ``[B, S, ...]`` with ``S <= W - 1``; memory ``[B, H, K, K]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.ahn import ahn_chunk, ahn_recurrent, ahn_reference
from mixerlab.ops.rotary import rotary
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "ahn",
    paper="Artificial Hippocampus Networks for Efficient Long-Context Modeling",
    arxiv="2510.07318",
    test_kwargs={"dim": 16, "num_heads": 2, "window": 5, "chunk_size": 8},
    meta={
        "state": "(W-1) H (2K + 2) + H K^2 (window cache + memory)",
        "time": "O(T W D + T K D + T D^2)",
        "memory": "O(T D)",
        "state_kind": "fixed",
    },
)
class ArtificialHippocampusNetwork(TokenMixer):
    """AHN, "Artificial Hippocampus Networks for Efficient Long-Context Modeling" (arXiv:2510.07318).

    Short-term memory is the sliding window of ``W`` key/value pairs (lossless); the AHN is an
    RNN that takes over each pair as it leaves the window (compressed, fixed size)::

        att_t = sum_{s=t-W+1}^{t} softmax_s(q_t . k_s / sqrt(K)) v_s                 # rotary q, k
        M    <- a_e M + beta_e k^_e v_e^T          for the position e = t - W + 1 leaving the window
        y_t   = [att_t^h + q^_t^h M_{t-W}^h]_h W_o                                 # memory up to t - W

    per head, with ``q^, k^`` the L2-normalised (unrotated) query and key, ``a_e = exp(-softplus(
    x_e w_a + b_a))`` and ``beta_e = sigmoid(x_e w_b + b_b)`` computed from the token when it was
    seen. The paper instantiates the AHN with Mamba2, DeltaNet or GatedDeltaNet; this is the
    Mamba2-style one (scalar data-dependent decay per head, additive write), which has an exact
    chunked training form. The memory reuses the attention's query/key/value projections, so the
    AHN adds only the gate projection (``D -> 2H``), in the spirit of the paper's light modules.

    State: ``{"k", "v": [B, S, H, K], "gate": [B, S, H, 2], "memory": [B, H, K, K]}`` with ``S =
    min(t, W - 1)`` (keys cached before rotation, rotated by their position within the window).
    Modes: ``"chunk"`` (windowed SDPA + chunked memory scan) and ``"reference"`` (per-token loop).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        window: int = 64,
        head_dim: int | None = None,
        chunk_size: int = 64,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "ahn"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_positive_int(name, "window", window)
        check_positive_int(name, "chunk_size", chunk_size)
        check(
            rotary_base is None or rotary_base > 0, name, "rotary_base", rotary_base, "expected > 0 or None"
        )
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.chunk_size, self.rotary_base = chunk_size, rotary_base
        K = self.head_dim
        self.qkv_proj = nn.Linear(dim, 3 * num_heads * K, bias=bias)
        self.gate_proj = nn.Linear(dim, 2 * num_heads)
        self.o_proj = nn.Linear(num_heads * K, dim, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Start with slow forgetting (a ~ 0.95) and half-strength writes.
        bias = self.gate_proj.bias.view(self.num_heads, 2)
        bias[:, 0].fill_(math.log(math.expm1(0.05)))
        bias[:, 1].zero_()

    def _rotate(self, t: Tensor, start: int) -> Tensor:
        if self.rotary_base is None:
            return t
        positions = torch.arange(start, start + t.shape[1], device=t.device)
        return rotary(t, positions, self.rotary_base)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        H = self.num_heads
        q, k, v = rearrange(self.qkv_proj(x), "b t (three h k) -> three b t h k", three=3, h=H)
        gate = rearrange(self.gate_proj(x), "b t (h two) -> b t h two", two=2)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        k = torch.cat([state["k"], k], dim=1)  # [B, L, H, K]: kept window, then the new tokens
        v = torch.cat([state["v"], v], dim=1)
        gate = torch.cat([state["gate"], gate], dim=1)
        past = k.shape[1] - x.shape[1]
        q_att, k_att = self._rotate(q, past), self._rotate(k, 0)
        q_mem, k_mem = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        log_a = -F.softplus(gate[..., 0])
        k_mem = k_mem * torch.sigmoid(gate[..., 1])[..., None]
        args = (q_att, k_att, v, q_mem, k_mem, log_a, state["memory"])
        if x.shape[1] == 1:
            o, memory = ahn_recurrent(*args, window=self.window)
        elif self.mode == "reference":
            o, memory = ahn_reference(*args, window=self.window)
        else:
            o, memory = ahn_chunk(*args, window=self.window, chunk_size=self.chunk_size)
        y = self.o_proj(rearrange(o, "b t h k -> b t (h k)"))
        start = max(0, k.shape[1] - (self.window - 1))
        return y, {"k": k[:, start:], "v": v[:, start:], "gate": gate[:, start:], "memory": memory}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, K = self.num_heads, self.head_dim
        return {
            "k": torch.zeros(batch_size, 0, H, K, **f),
            "v": torch.zeros(batch_size, 0, H, K, **f),
            "gate": torch.zeros(batch_size, 0, H, 2, **f),
            "memory": torch.zeros(batch_size, H, K, K, **f),
        }

    def state_size(self, seq_len: int) -> int:
        H, K = self.num_heads, self.head_dim
        return min(seq_len, self.window - 1) * H * (2 * K + 2) + H * K * K
