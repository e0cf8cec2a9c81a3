"""The Based token mixer: Taylor linear attention on a short causal convolution, plus sliding-window
softmax attention, "Simple linear attention language models balance the recall-throughput tradeoff"
(arXiv:2402.18668).

Shapes: ``x: [B, T, D]``; feature queries/keys ``[B, T, H, F]`` mapped to ``[B, T, H, 1 + F + F^2]``;
values ``[B, T, H, V]``; linear-attention state ``S: [B, H, 1 + F + F^2, V]``, ``z: [B, H, 1 + F + F^2]``;
convolution tail ``[B, conv_size - 1, D]``; window cache ``[B, <= window - 1, H, K]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.attention import SlidingWindowAttention
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.layers.token_mixers.linear_attention import (
    feature_qkv,
    feature_size,
    normalized_linear_attention,
)
from mixerlab.ops.backends.fla import check_backend
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "based",
    paper="Simple linear attention language models balance the recall-throughput tradeoff",
    arxiv="2402.18668",
    test_kwargs={"dim": 16, "num_heads": 2, "feature_dim": 4, "window": 5, "conv_size": 3, "chunk_size": 8},
    meta={
        "state": "H (1 + F + F^2)(V + 1) + (conv_size - 1) D + 2 min(T, window - 1) H K",
        "time": "O(T C F^2 V + T window D) per layer",
        "memory": "O(T (C + F^2) + T window) per head",
        "state_kind": "fixed",
    },
)
class Based(TokenMixer):
    """Based, "Simple linear attention LMs balance the recall-throughput tradeoff" (arXiv:2402.18668).

    Based stacks three kinds of layers (gated short convolutions, Taylor linear attention and
    sliding-window attention). As one token mixer this runs its two attention kinds side by side
    and sums them, with the short convolution in front of the linear attention (it supplies the
    local, precise token shifts the convolution layers give in the paper)::

        u_t = sum_{j < conv_size} w_j * x_{t-j} + b                 (depthwise, causal)
        phi(y) = [1, y / F^(1/4), vec(y y^T) / (sqrt(2) sqrt(F))]   (2nd-order Taylor of exp)
        la_t = (phi(q_t) S_t / (phi(q_t) . z_t + eps)) W_o,   q, k, v from u_t,  eps = 1e-12
        out_t = la_t + SlidingWindowAttention(x)_t

    Defaults follow the authors' configs: ``feature_dim = 16``, ``conv_size = 3`` (an ``nn.Conv1d``
    with its default init), ``window = 64``.
    The state holds the linear-attention ``S, z``, the convolution's last ``conv_size - 1`` inputs
    and the window's key/value cache. ``backend`` (``"auto"``, ``"torch"``, ``"fla"``) picks the
    linear attention's chunk kernels: fla's ``chunk_simple_gla`` on the Taylor features for CUDA
    inputs when installed (see :mod:`mixerlab.ops.backends`).
    """

    modes = ("chunk", "recurrent", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        feature_dim: int = 16,
        window: int = 64,
        conv_size: int = 3,
        chunk_size: int = 64,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "based"
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        for field, value in (
            ("feature_dim", feature_dim),
            ("window", window),
            ("conv_size", conv_size),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(name, field, value)
        check_backend(name, backend)
        self.dim, self.num_heads, self.feature_dim, self.backend = dim, num_heads, feature_dim, backend
        self.conv_size, self.chunk_size, self.eps = conv_size, chunk_size, 1e-12
        self.key_dim = feature_size("taylor", feature_dim)
        self.conv = ShortConv(dim, conv_size, owner=name)
        load_legacy_conv_keys(self, "conv")
        self.qk_proj = nn.Linear(dim, 2 * num_heads * feature_dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.o_proj = nn.Linear(dim, dim, bias=bias)
        self.window_attention = SlidingWindowAttention(dim, num_heads=num_heads, window=window, bias=bias)

    @TokenMixer.mode.setter
    def mode(self, value: str) -> None:
        TokenMixer.mode.fset(self, value)
        self.window_attention.mode = "reference" if value == "reference" else "chunk"

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        u, conv_tail = self.conv(x, state["conv"], reference=self.mode == "reference")
        y_linear, S, z = self._taylor_attention(u, state["S"], state["z"])
        y_window, window_state = self.window_attention(
            x, state={"k": state["window_k"], "v": state["window_v"]}
        )
        new_state = {
            "S": S,
            "z": z,
            "conv": conv_tail,
            "window_k": window_state["k"],
            "window_v": window_state["v"],
        }
        return y_linear + y_window, new_state

    def _taylor_attention(self, u: Tensor, S: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = feature_qkv(u, self.qk_proj, self.v_proj, self.num_heads, "taylor")
        o, S, z = normalized_linear_attention(
            self.mode, q, k, v, S, z, self.chunk_size, self.eps, backend=self.backend, owner="based"
        )
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), S, z

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        factory = self._factory(device, dtype)
        H, K, V = self.num_heads, self.key_dim, self.head_dim
        window = self.window_attention.init_state(batch_size, **factory)
        return {
            "S": torch.zeros(batch_size, H, K, V, **factory),
            "z": torch.zeros(batch_size, H, K, **factory),
            "conv": self.conv.init_state(batch_size, **factory),
            "window_k": window["k"],
            "window_v": window["v"],
        }

    def state_size(self, seq_len: int) -> int:
        linear = self.num_heads * self.key_dim * (self.head_dim + 1)
        return linear + self.conv.state_size() + self.window_attention.state_size(seq_len)
