"""Attentive pooling head: ``attentive_pool`` (learned queries cross-attend to the backbone's tokens).

Shapes: tokens ``h: [B, T, D]``; learned queries ``[Q, D]``; per head ``[B, Q, H, K]`` against keys
and values ``[B, T, H, K]``; classify ``[B, num_classes]``, regress ``[B]`` (``[B, K]`` for
``num_outputs = K > 1``).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check_divisible, check_positive_int
from mixerlab.models.stems import Context, Stem
from mixerlab.registry import HEADS

OWNER = "attentive_pool head"


@HEADS.register(
    "attentive_pool",
    meta={"kinds": ("classify", "regress")},
    paper="Set Transformer: pooling by multihead attention (PMA) with learned seed queries",
    arxiv="1810.00825",
    test_kwargs={"dim": 8, "num_classes": 3, "num_heads": 2},
)
class AttentivePoolHead(nn.Module):
    """Attentive pooling, Set Transformer's PMA (arXiv:1810.00825), as a classify/regress read-out.

    ``num_queries`` learned seed vectors attend, per head, to every token the backbone returns
    (class and prefix tokens included, no mask, no positions)::

        a_q = softmax_t((s_q W_q) . (h_t W_k) / sqrt(K)),   z_q = sum_t a_q,t h_t W_v
        y   = Linear(mean_q z_q W_o)

    so it reads any backbone's ``[B, T, D]``, pools over all of its tokens with weights it
    learns (where ``classify``'s mean or class token are fixed), and is invariant to their
    order. Its kind is the task's: ``num_classes`` (a classify task passes it) gives class
    logits ``[B, num_classes]``, ``num_outputs`` (a regress task passes it) values ``[B]`` or
    ``[B, num_outputs]``; exactly one of the two is given.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int | None = None,
        num_outputs: int | None = None,
        num_queries: int = 1,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        if (num_classes is None) == (num_outputs is None):
            raise ConfigError(
                OWNER,
                "num_classes/num_outputs",
                (num_classes, num_outputs),
                "give exactly one: num_classes for a classify task, num_outputs for a regress task",
            )
        out = num_classes if num_classes is not None else num_outputs
        check_positive_int(OWNER, "num_classes" if num_classes is not None else "num_outputs", out)
        check_positive_int(OWNER, "num_queries", num_queries)
        check_positive_int(OWNER, "num_heads", num_heads)
        check_divisible(OWNER, "dim", dim, "num_heads", num_heads)
        self.kind = "classify" if num_classes is not None else "regress"
        self.dim, self.num_heads, self.num_queries, self.num_outputs = dim, num_heads, num_queries, out
        self.queries = nn.Parameter(torch.empty(num_queries, dim))  # [Q, D]
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, out)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.queries, std=1.0 / math.sqrt(self.dim))

    def pool(self, h: Tensor) -> Tensor:
        """``h: [B, T, D] -> [B, D]``: the queries' attention-weighted tokens, averaged over queries."""
        q = rearrange(self.q_proj(self.queries), "q (h k) -> q h k", h=self.num_heads)
        k, v = rearrange(self.kv_proj(h), "b t (two h k) -> two b t h k", two=2, h=self.num_heads)
        scores = torch.einsum("qhk,bthk->bhqt", q, k) / math.sqrt(q.shape[-1])
        z = torch.einsum("bhqt,bthk->bqhk", torch.softmax(scores, dim=-1), v)
        return self.o_proj(rearrange(z, "b q h k -> b q (h k)")).mean(dim=1)

    def forward(self, h: Tensor, stem: Stem | None = None, context: Context | None = None) -> Tensor:
        if h.dim() != 3 or h.shape[-1] != self.dim:
            raise ConfigError(OWNER, "h.shape", tuple(h.shape), f"expected [B, T, D] with D={self.dim}")
        y = self.proj(self.pool(h))
        return y.squeeze(-1) if self.kind == "regress" and self.num_outputs == 1 else y
