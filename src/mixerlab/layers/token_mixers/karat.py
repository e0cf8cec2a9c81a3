"""Kolmogorov-Arnold attention: ``karat`` (a learnable Fourier-basis function in place of softmax).

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G`` key/value
heads (grouped-query attention, arXiv:2305.13245); rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.karat import karat_parallel, karat_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "karat",
    paper="Kolmogorov-Arnold Attention: Is Learnable Attention Better For Vision Transformers?",
    arxiv="2503.10632",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2, "num_frequencies": 3},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T^2 (D + H F))",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class KolmogorovArnoldAttention(Attention):
    """Kolmogorov-Arnold attention, KArAt (arXiv:2503.10632), its Fourier variant.

    Each head's softmax is replaced by a learnable univariate function of the score on
    ``num_frequencies`` Fourier modes plus a constant (FourierKAN's basis, shared with the ``kan``
    channel mixers through :mod:`mixerlab.ops.kan`), applied to every visible score of a row; the
    row is then divided by its l1 norm (KArAt's projection keeping rows at a softmax's scale;
    weights may be negative). Causally masked: hidden keys weigh 0. The constant starts at 1 and
    the Fourier coefficients small, so at initialisation the layer is close to a causal mean.
    Everything else is :class:`Attention` (rotary, grouped-query heads, the key/value cache as
    state, ``causal=False`` with a padding mask). Packed documents run one at a time. Modes:
    ``parallel`` (score tiles, causal ones above the diagonal skipped), ``reference`` (the per-query loop).
    """

    name: ClassVar[str] = "karat"
    modes = ("parallel", "reference")
    packed = "split"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        num_frequencies: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        eps: float = 1e-6,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
        causal: bool = True,
    ) -> None:
        check_positive_int(self.name, "num_frequencies", num_frequencies)
        check(isinstance(eps, (int, float)) and eps > 0, self.name, "eps", eps, "expected > 0")
        super().__init__(dim, num_heads, num_kv_heads, head_dim, rotary_base, bias, causal)
        self.num_frequencies, self.eps = num_frequencies, float(eps)
        self.coefficients = nn.Parameter(torch.empty(num_heads, 2 * num_frequencies))  # [H, 2F]
        self.score_bias = nn.Parameter(torch.empty(num_heads))  # [H]
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.coefficients, std=0.1)
        nn.init.ones_(self.score_bias)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        fn = karat_reference if self.mode == "reference" else karat_parallel
        o = fn(
            q, k, v, self.coefficients, self.score_bias, eps=self.eps, causal=self.causal, key_mask=key_mask
        )
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)"))

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        return TokenMixer.forward_packed(self, x, cu_seqlens, states=states)
