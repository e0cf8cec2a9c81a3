"""Heavy-Hitter Oracle attention: ``h2o`` (softmax attention with a cache bounded by ``budget``).

Shapes: ``x: [B, T, D]``; queries, keys and values ``[B, T, H, K]``; the cache ``[B, S, H, K]`` with
``S <= budget`` tokens per head and their accumulated attention ``[B, S, H]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.h2o import h2o_attention_parallel, h2o_attention_reference, h2o_evict
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "h2o",
    paper="H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models",
    arxiv="2306.14048",
    test_kwargs={"dim": 16, "num_heads": 4, "budget": 40, "recent": 8},
    meta={
        "state": "min(T, budget) H (2 K + 1) + 1 (bounded cache)",
        "time": "O(T^2 D) prefill, O(budget D) per decoded token",
        "memory": "O(T^2 H)",
        "state_kind": "fixed",
    },
)
class HeavyHitterAttention(Attention):
    """Heavy-Hitter Oracle, H2O (arXiv:2306.14048): causal softmax attention, bounded cache.

    Within one call every query reads every visible key (the cache and the call's tokens): a
    training or prefill call is full causal attention. After the call each head's cache is cut
    to ``budget`` tokens: the ``recent`` newest ones and the heavy hitters, the older tokens with
    the largest attention accumulated over every query so far (:mod:`mixerlab.ops.h2o`). The state
    is ``{"k", "v": [B, S, H, K], "score": [B, S, H], "position": [B, 1]}`` with ``S = min(T,
    budget)``; ``position`` counts the tokens seen (float32; keys are cached rotated to their
    absolute positions, so the cache length no longer gives the next one).

    Equal to attention while ``budget`` covers the context, also split or decoded token by token.
    Past it, decoding one token per call is H2O's policy (evict after every step), and a split
    call differs from one call by what was evicted at the split: the approximation the paper
    makes, not a fault of the state. One key/value head per query head (each evicts its own
    tokens). Modes: ``parallel`` (explicit weights: the scores are needed for eviction),
    ``reference`` (the per-query loop). Causal by design; packed documents run one at a time.
    """

    modes = ("parallel", "reference")
    noncausal = "bidirectional"
    packed = "split"
    name = "h2o"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        budget: int = 256,
        recent: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
    ) -> None:
        check_positive_int(self.name, "budget", budget)
        recent = budget // 2 if recent is None else recent
        check(
            isinstance(recent, int) and 0 <= recent <= budget,
            self.name,
            "recent",
            recent,
            f"expected an int in [0, budget={budget}]",
        )
        super().__init__(dim, num_heads, None, head_dim, rotary_base, bias, causal=True)
        self.budget, self.recent = budget, recent

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype) if state is None else state
        q, k, v = self._project(x)
        start = int(state["position"][0, 0].item()) if state["position"].numel() else 0
        q, k = self._rotate(q, k, start)  # the call's tokens at their absolute positions
        k = torch.cat([state["k"], k], dim=1)
        v = torch.cat([state["v"], v], dim=1)
        fn = h2o_attention_reference if self.mode == "reference" else h2o_attention_parallel
        o, received = fn(q, k, v)
        score = torch.cat([state["score"], torch.zeros_like(received[:, state["score"].shape[1] :])], 1)
        k, v, score = h2o_evict(k, v, score + received, budget=self.budget, recent=self.recent)
        y = self.o_proj(rearrange(o, "b t h v -> b t (h v)"))
        return y, {"k": k, "v": v, "score": score, "position": state["position"] + x.shape[1]}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        factory = self._factory(device, dtype)
        empty = torch.zeros(batch_size, 0, self.num_heads, self.head_dim, **factory)
        return {
            "k": empty,
            "v": empty.clone(),
            "score": torch.zeros(batch_size, 0, self.num_heads, **factory),
            "position": torch.zeros(batch_size, 1, device=factory["device"], dtype=torch.float32),
        }

    def state_size(self, seq_len: int) -> int:
        return min(seq_len, self.budget) * self.num_heads * (2 * self.head_dim + 1) + 1

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        return TokenMixer.forward_packed(self, x, cu_seqlens, states=states)
