"""Multi-head latent attention: ``mla`` (a low-rank latent cache and a decoupled rotary key).

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K + R]``; latents ``[B, T, C]`` (``latent_dim``);
the shared rotary key ``[B, T, R]`` (``rope_dim``); per-head keys ``[B, T, H, K + R]``, values
``[B, T, H, K]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.mla import mla_parallel, mla_reference
from mixerlab.ops.rotary import rotary
from mixerlab.registry import TOKEN_MIXERS

OWNER = "mla"


@TOKEN_MIXERS.register(
    "mla",
    paper="DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model (MLA)",
    arxiv="2405.04434",
    test_kwargs={"dim": 16, "num_heads": 4, "latent_dim": 6, "rope_dim": 4},
    meta={
        "state": "T (C + R) (latent cache)",
        "time": "O(T^2 H (K + R) + T D C)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class MultiHeadLatentAttention(TokenMixer):
    """Multi-head latent attention, DeepSeek-V2 (arXiv:2405.04434), section 2.1.

    Keys and values come from one low-rank latent per token, ``c_t = W_DKV x_t`` (``latent_dim``
    C), up-projected per head (``k^C = W_UK c``, ``v = W_UV c``); position enters through a
    decoupled rotary key ``k^R_t = RoPE(W_KR x_t)`` (``rope_dim`` R) shared by all heads and a
    rotary part of each query, ``q_t = [W_Q x_t, RoPE(W_QR x_t)]``. The decoding state is the
    compressed cache ``{"latent": [B, S, C], "k_rope": [B, S, R]}``: ``T (C + R)`` scalars per
    sequence where attention keeps ``2 T H K``. Queries are not compressed (the paper's query
    latent saves training memory only) and the latent carries no norm. Modes: ``sdpa`` (keys
    and values rebuilt, one SDPA call), ``reference`` (the per-query loop over the latents with
    the absorbed up-projections, the paper's decoding form). Causal: the non-causal form is the
    bidirectional wrapper; packed documents run one at a time.
    """

    modes = ("sdpa", "reference")
    packed = "split"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        latent_dim: int | None = None,
        rope_dim: int | None = None,
        head_dim: int | None = None,
        rotary_base: float = 10000.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        K = resolve_heads(OWNER, dim, num_heads, head_dim)
        latent_dim = 4 * K if latent_dim is None else latent_dim  # the paper's d_c = 4 d_h
        rope_dim = max(2, K // 2) if rope_dim is None else rope_dim  # and d_h^R = d_h / 2
        check_positive_int(OWNER, "latent_dim", latent_dim)
        check_positive_int(OWNER, "rope_dim", rope_dim)
        check(rope_dim % 2 == 0, OWNER, "rope_dim", rope_dim, "expected an even number (rotary pairs)")
        check(rotary_base > 0, OWNER, "rotary_base", rotary_base, "expected > 0")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, K
        self.latent_dim, self.rope_dim, self.rotary_base = latent_dim, rope_dim, rotary_base
        self.q_proj = nn.Linear(dim, num_heads * (K + rope_dim), bias=bias)
        self.dkv_proj = nn.Linear(dim, latent_dim, bias=bias)  # W_DKV
        self.kr_proj = nn.Linear(dim, rope_dim, bias=bias)  # W_KR
        self.uk_proj = nn.Linear(latent_dim, num_heads * K, bias=False)  # W_UK
        self.uv_proj = nn.Linear(latent_dim, num_heads * K, bias=False)  # W_UV
        self.o_proj = nn.Linear(num_heads * K, dim, bias=bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        past = 0 if state is None else state["latent"].shape[1]
        positions = torch.arange(past, past + x.shape[1], device=x.device)
        q = rearrange(self.q_proj(x), "b t (h k) -> b t h k", h=self.num_heads)
        q_nope = q[..., : self.head_dim]
        q_rope = rotary(q[..., self.head_dim :], positions, self.rotary_base)
        latent = self.dkv_proj(x)  # [B, T, C]
        k_rope = rotary(self.kr_proj(x)[:, :, None], positions, self.rotary_base)[:, :, 0]  # [B, T, R]
        if state is not None:
            latent = torch.cat([state["latent"], latent], dim=1)
            k_rope = torch.cat([state["k_rope"], k_rope], dim=1)
        w_uk = rearrange(self.uk_proj.weight, "(h k) c -> h k c", h=self.num_heads)
        w_uv = rearrange(self.uv_proj.weight, "(h k) c -> h k c", h=self.num_heads)
        fn = mla_reference if self.mode == "reference" else mla_parallel
        o = fn(q_nope, q_rope, latent, k_rope, w_uk, w_uv)
        return self.o_proj(rearrange(o, "b t h k -> b t (h k)")), {"latent": latent, "k_rope": k_rope}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        factory = self._factory(device, dtype)
        return {
            "latent": torch.zeros(batch_size, 0, self.latent_dim, **factory),
            "k_rope": torch.zeros(batch_size, 0, self.rope_dim, **factory),
        }

    def state_size(self, seq_len: int) -> int:
        return seq_len * (self.latent_dim + self.rope_dim)
