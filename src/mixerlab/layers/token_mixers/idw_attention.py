"""Inverse-distance-weighting attention: ``idw_attention`` (weights ``1 / ||q - k||^p``, normalised).

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G`` key/value
heads (grouped-query attention, arXiv:2305.13245).
"""

from __future__ import annotations

from typing import ClassVar

from einops import rearrange
from torch import Tensor

from mixerlab.errors import check
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.idw_attention import idw_attention_parallel, idw_attention_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "idw_attention",
    paper="Inverse distance weighting attention",
    arxiv="2310.18805",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T^2 D)",
        "memory": "O(T^2 H)",
        "state_kind": "growing",
    },
)
class InverseDistanceAttention(Attention):
    """Inverse distance weighting attention, McCarter (arXiv:2310.18805).

    The score ``q . k / sqrt(K)`` inside the softmax becomes ``-p log ||q_t - k_s||``, so each
    query interpolates the values it sees with weights proportional to ``||q_t - k_s||^-p``
    (:mod:`mixerlab.ops.idw_attention`); keys act as prototypes and values as their outputs.
    Everything else is :class:`Attention`: grouped-query heads, the key/value cache as state,
    ``causal=False`` (every position read, ``mask: [B, T]`` hides padded keys). Positions are
    off by default (``rotary_base=None``), as in the paper; a rotary rotation keeps distances
    relative (``||R_m q - R_n k||`` depends on ``m - n`` only), so it may be switched on.
    Packed documents run one at a time (``packed = "split"``). Modes: ``parallel`` (all queries
    in one batched product), ``reference`` (the per-query loop).
    """

    name: ClassVar[str] = "idw_attention"
    modes = ("parallel", "reference")
    packed = "split"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        power: float = 1.0,
        eps: float = 1e-6,
        rotary_base: float | None = None,
        bias: bool = False,
        causal: bool = True,
    ) -> None:
        check(isinstance(power, (int, float)) and power > 0, self.name, "power", power, "expected > 0")
        check(isinstance(eps, (int, float)) and eps > 0, self.name, "eps", eps, "expected > 0")
        super().__init__(dim, num_heads, num_kv_heads, head_dim, rotary_base, bias, causal)
        self.power, self.eps = float(power), float(eps)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        fn = idw_attention_reference if self.mode == "reference" else idw_attention_parallel
        o = fn(q, k, v, power=self.power, eps=self.eps, causal=self.causal, key_mask=key_mask)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)"))

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        return TokenMixer.forward_packed(self, x, cu_seqlens, states=states)
