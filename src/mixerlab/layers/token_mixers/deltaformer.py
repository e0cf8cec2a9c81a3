"""DeltaFormer (``deltaformer``): softmax attention over delta-rule-corrected values (arXiv:2505.19488).

Shapes: ``x: [B, T, D]``; queries/keys ``[B, T, H, K]``; values ``[B, T, H, K]``; ``beta: [B, T, H]``;
state: the rotated keys ``k: [B, S, H, K]`` and corrected values ``u: [B, S, H, K]`` of the ``S``
tokens seen so far.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.backends.fla_attention import check_attention_backend, deltaformer_fla, use_fla_attention
from mixerlab.ops.deltaformer import deltaformer_parallel, deltaformer_reference
from mixerlab.ops.rotary import rotary, rotary_tables
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "deltaformer",
    paper="Understanding Transformer from the Perspective of Associative Memory",
    arxiv="2505.19488",
    test_kwargs={"dim": 16, "num_heads": 2},
    meta={
        "state": "2 T H K (keys and corrected values)",
        "time": "O(T^2 D) (one triangular solve and one attention)",
        "memory": "O(T^2 H)",
        "state_kind": "growing",
    },
)
class DeltaFormer(TokenMixer):
    """DeltaFormer, "Understanding Transformer from the Perspective of Associative Memory" (arXiv:2505.19488).

    The delta rule with a softmax kernel in place of the dot product: each value is first
    corrected by what the memory already returns for its key, then read by softmax attention::

        q, k, v = RoPE(W_q x), RoPE(W_k x), W_v x;      beta_t = sigmoid(w_beta . x_t)
        u_t     = v_t - beta_t sum_{i<t} softmax_i(k_t . k_i / sqrt(K)) u_i
        o_t     = sum_{i<=t} softmax_i(q_t . k_i / sqrt(K)) u_i,    y_t = W_o [o_t^1; ...; o_t^H]

    ``beta`` (a learned per-head write strength, as in the authors' released kernel) scales the
    correction. The state is the keys and corrected values, growing with ``T`` like attention's
    cache. The fast form solves for all ``u`` of a call with one unit lower-triangular solve
    (``ops.deltaformer.parallel``) and reads them with ``ops.attention``; no chunked form.
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): from an empty cache the corrected values
    come from fla's DeltaFormer kernel for CUDA inputs when installed (head sizes 16 to 128, see
    :mod:`mixerlab.ops.backends.fla_attention`); decoding keeps mixerlab's form.
    """

    modes = ("parallel", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "deltaformer"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_attention_backend(name, name, backend, self.head_dim)
        self.backend = backend
        check(
            rotary_base is None or rotary_base > 0, name, "rotary_base", rotary_base, "expected > 0 or None"
        )
        self.dim, self.num_heads, self.rotary_base = dim, num_heads, rotary_base
        H, K = num_heads, self.head_dim
        self.qkv_proj = nn.Linear(dim, 3 * H * K, bias=False)
        self.b_proj = nn.Linear(dim, H, bias=False)
        self.o_proj = nn.Linear(H * K, dim, bias=False)

    def reset_parameters(self) -> None:
        """No parameters of its own: the linear layers initialise themselves."""

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype) if state is None else state
        q, k, v = rearrange(self.qkv_proj(x), "b t (n h k) -> n b t h k", n=3, h=self.num_heads)
        if self.rotary_base is not None:
            start = state["k"].shape[1]
            positions = torch.arange(start, start + x.shape[1], device=x.device)
            tables = rotary_tables(positions, self.head_dim, x.dtype, self.rotary_base)
            q, k = rotary(q, positions, tables=tables), rotary(k, positions, tables=tables)
        beta = torch.sigmoid(self.b_proj(x))
        name, cached = "deltaformer", state["k"].shape[1]
        if self.mode == "reference":
            o, keys, values = deltaformer_reference(q, k, v, beta, state["k"], state["u"])
        elif use_fla_attention(name, name, self.backend, q, head_dim=self.head_dim, cached=cached):
            o, keys, values = deltaformer_fla(q, k, v, beta)
        else:
            o, keys, values = deltaformer_parallel(q, k, v, beta, state["k"], state["u"])
        return self.o_proj(rearrange(o, "b t h k -> b t (h k)")), {"k": keys, "u": values}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, **f)
        return {"k": empty, "u": empty.clone()}

    def state_size(self, seq_len: int) -> int:
        return 2 * seq_len * self.num_heads * self.head_dim
