"""EViT's token reorganisation (arXiv:2202.07800): keep the attentive tokens, fuse the rest into one.

"Not All Patches are What You Need: Expediting Vision Transformers via Token Reorganizations":
between layers, the image tokens the class token attends to most are kept, and the others are
fused into a single token weighted by that attention, so every later layer mixes fewer tokens
(its FLOPs fall with the kept fraction; attention's quadratically).

EViT reads the class-token attention of the layer's own attention heads. To work with any token
mixer (convolutional, recurrent, MLP mixers have no attention map), the attentiveness here is a
parameter-free one-head attention of the class token over the normalised tokens,
``a_j = softmax_j(<x_cls, x_j> / sqrt(D))``; the choice of tokens is discrete, and gradients
reach the attentiveness through the fused token's weights, as in EViT.

A mixer that needs the patch grid (convolutions, token MLPs, 2-D scans) cannot run after a
reorganisation (the kept tokens no longer form a grid); :class:`~mixerlab.models.backbone.Backbone`
refuses that combination.

Shapes: ``x: [B, P + N, D] -> [B, P + k + 1, D]`` with ``k = ceil(keep_ratio N)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check


class TokenReorganization(nn.Module):
    """EViT's attentive token reorganisation (arXiv:2202.07800); see the module docstring.

    ``enabled = False`` passes tokens through unchanged (to measure what the reduction saves).
    """

    def __init__(self, keep_ratio: float, num_prefix_tokens: int) -> None:
        super().__init__()
        check(
            isinstance(keep_ratio, (int, float)) and 0 < keep_ratio <= 1,
            "token_reduction",
            "keep_ratio",
            keep_ratio,
            "expected a fraction in (0, 1]",
        )
        check(
            num_prefix_tokens >= 1,
            "token_reduction",
            "num_prefix_tokens",
            num_prefix_tokens,
            "EViT ranks tokens by the class token's attention: the stem needs a class token",
        )
        self.keep_ratio, self.num_prefix_tokens = float(keep_ratio), num_prefix_tokens
        self.enabled = True

    def kept(self, num_tokens: int) -> int:
        """Tokens after the reorganisation of ``num_tokens`` (prefix + kept + one fused)."""
        n = num_tokens - self.num_prefix_tokens
        k = max(1, math.ceil(self.keep_ratio * n))
        return num_tokens if k + 1 >= n else self.num_prefix_tokens + k + 1

    def attentiveness(self, x: Tensor) -> Tensor:
        """The class token's attention over the image tokens, ``[B, N]`` (sums to 1)."""
        h = F.layer_norm(x, x.shape[-1:])
        cls, tokens = h[:, :1], h[:, self.num_prefix_tokens :]
        return (torch.einsum("bod,bnd->bn", cls, tokens) / math.sqrt(x.shape[-1])).softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        P, T = self.num_prefix_tokens, x.shape[1]
        if not self.enabled or self.kept(T) == T:
            return x
        k = self.kept(T) - P - 1
        attn = self.attentiveness(x)  # [B, N]
        # The kept tokens stay in their original (row-major) order for order-sensitive mixers.
        top = attn.topk(k, dim=-1).indices.sort(dim=-1).values  # [B, k]
        rest = torch.ones_like(attn, dtype=torch.bool).scatter(1, top, False)
        tokens = x[:, P:]
        kept = tokens.gather(1, top[..., None].expand(-1, -1, x.shape[-1]))
        # EViT's fused token: the inattentive tokens summed with their attention as weights.
        fused = torch.einsum("bn,bnd->bd", attn * rest, tokens)[:, None]
        return torch.cat([x[:, :P], kept, fused], dim=1)


def check_token_reduction(spec: Any, depth: int) -> tuple[float, list[int]]:
    """Validate ``{"keep_ratio": r, "layers": [i, ...]}``; returns ``(r, sorted layers)``.

    A reorganisation runs at the entry of each listed layer (0-based, before its block).
    """
    allowed = "expected {'keep_ratio': a fraction in (0, 1], 'layers': [layer indices]}"
    check(isinstance(spec, dict), "token_reduction", "token_reduction", spec, allowed)
    unknown = set(spec) - {"keep_ratio", "layers"}
    check(not unknown, "token_reduction", "token_reduction", spec, allowed)
    layers = spec.get("layers")
    check(
        isinstance(layers, list)
        and layers
        and all(isinstance(i, int) and 0 <= i < depth for i in layers)
        and len(set(layers)) == len(layers),
        "token_reduction",
        "layers",
        layers,
        f"expected a non-empty list of distinct layer indices in [0, {depth})",
    )
    return spec.get("keep_ratio", 0.7), sorted(layers)


@torch.no_grad()
def flops_fraction(model: nn.Module, inputs: Any) -> float:
    """Forward FLOPs of ``model`` with its token reorganisations over those without (1.0: none)."""
    from torch.utils.flop_counter import FlopCounterMode

    reducers = [m for m in model.modules() if isinstance(m, TokenReorganization)]

    def count() -> float:
        with FlopCounterMode(display=False) as counter:
            model(inputs)
        return float(counter.get_total_flops())

    was_training = model.training
    model.eval()
    try:
        reduced = count()
        for m in reducers:
            m.enabled = False
        full = count()
    finally:
        for m in reducers:
            m.enabled = True
        model.train(was_training)
    return reduced / full
