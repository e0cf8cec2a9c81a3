"""Titans neural-memory token mixer (``titans``): a deep memory trained at test time, read by queries.

Shapes: ``x: [B, T, D]``; ``H = num_heads`` heads of ``K = head_dim = D / H``: ``q, k, v:
[B, T, H, K]``; gates ``eta, theta, alpha: [B, T, H]``; the state holds the memory MLP's weights
``w1: [B, H, M, K]``, ``w2: [B, H, K, M]`` (``M = expand K``), their momenta ``s1, s2``, the weights
at the start of the current chunk ``w1_base, w2_base`` and ``pos: [B]``, the tokens already in
that chunk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.titans import titans_chunk, titans_reference
from mixerlab.registry import TOKEN_MIXERS

_WEIGHTS = ("w1", "w2", "s1", "s2", "w1_base", "w2_base")


@TOKEN_MIXERS.register(
    "titans",
    paper="Titans: Learning to Memorize at Test Time",
    arxiv="2501.00663",
    test_kwargs={"dim": 16, "num_heads": 2, "expand": 2, "chunk_size": 5},
    meta={
        "state": "6 H K M + 1 (memory, momentum, chunk base, position), M = expand K",
        "time": "O(T C D + T D M) chunked (C = chunk_size)",
        "memory": "O(T H M + T C H)",
        "state_kind": "fixed",
    },
)
class Titans(TokenMixer):
    """Titans neural long-term memory, "Titans: Learning to Memorize at Test Time" (arXiv:2501.00663).

    The memory layer of the paper's memory-as-a-layer (MAL) architecture: per head a two-layer
    MLP memory ``M(k) = W2 silu(W1 k)`` (hidden ``M = expand * head_dim``) learns the pairs
    ``(k_t, v_t)`` while reading, by gradient descent on ``1/2 ||M(k_t) - v_t||^2`` with momentum
    (surprise) ``eta_t``, step ``theta_t`` and weight decay (forgetting) ``alpha_t``, all
    data-dependent (equations in :mod:`mixerlab.ops.titans.reference`); it is read with the
    query, ``y_t = W_o M_t(q_t)``. Keys and queries are L2-normalised per head (as in the paper).
    ``chunk_size`` tokens take their gradients at the memory the previous chunk ended with (the
    paper's parallel training; ``chunk_size`` is part of the definition).

    In MAL a sliding-window attention follows this layer: build it as a hybrid with the
    registered ``sliding_window`` mixer in the next block (the persistent memory tokens of the
    paper are not included). Modes: ``"chunk"`` (the chunked form of sec. 3.2) and
    ``"reference"`` (per-token steps through ``torch.autograd``). ``W1_0, W2_0`` are learned.
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        expand: int = 2,
        chunk_size: int = 16,
        base_lr: float = 0.1,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        name = "titans"
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "expand", expand)
        check_positive_int(name, "chunk_size", chunk_size)
        check(base_lr > 0, name, "base_lr", base_lr, "expected > 0")
        self.dim, self.num_heads, self.chunk_size, self.base_lr = dim, num_heads, chunk_size, float(base_lr)
        K, M = self.head_dim, expand * self.head_dim
        f = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(dim, 3 * dim, bias=False, **f)
        self.gates = nn.Linear(dim, 3 * num_heads, **f)
        self.out_proj = nn.Linear(dim, dim, bias=False, **f)
        self.w1 = nn.Parameter(torch.empty(num_heads, M, K, **f))
        self.w2 = nn.Parameter(torch.empty(num_heads, K, M, **f))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The initial memory: each layer normal with std ``1 / sqrt(fan_in)``."""
        nn.init.normal_(self.w1, std=1 / math.sqrt(self.w1.shape[-1]))
        nn.init.normal_(self.w2, std=1 / math.sqrt(self.w2.shape[-1]))

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        Bsz, H = x.shape[0], self.num_heads
        q, k, v = rearrange(self.qkv(x), "b t (n h k) -> n b t h k", n=3, h=H)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        g_eta, g_theta, g_alpha = rearrange(self.gates(x), "b t (n h) -> n b t h", n=3)
        # offsets: start with strong momentum (0.9) and little forgetting (0.02)
        eta = torch.sigmoid(g_eta + 2.2)
        theta = self.base_lr * torch.sigmoid(g_theta)
        alpha = torch.sigmoid(g_alpha - 4.0)
        if state is None:
            w1, w2 = (w.expand(Bsz, *w.shape) for w in (self.w1, self.w2))
            mem = (w1, w2, torch.zeros_like(w1), torch.zeros_like(w2), w1, w2, 0)
        else:
            mem = (*(state[n] for n in _WEIGHTS), round(float(state["pos"][0])))
        op = titans_reference if self.mode == "reference" else titans_chunk
        y, mem = op(q, k, v, eta, theta, alpha, mem, chunk_size=self.chunk_size)
        new_state = dict(zip(_WEIGHTS, mem[:-1]))
        new_state["pos"] = x.new_full((Bsz,), float(mem[-1]))
        return self.out_proj(rearrange(y, "b t h k -> b t (h k)")), new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        w1, w2 = (w.detach().to(**f).expand(batch_size, *w.shape).clone() for w in (self.w1, self.w2))
        return {
            "w1": w1,
            "w2": w2,
            "s1": torch.zeros_like(w1),
            "s2": torch.zeros_like(w2),
            "w1_base": w1.clone(),
            "w2_base": w2.clone(),
            "pos": torch.zeros(batch_size, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return 3 * (self.w1.numel() + self.w2.numel()) + 1
