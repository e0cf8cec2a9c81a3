"""AutoInt (arXiv:1810.11921): multi-head self-attention over feature fields, with residuals.

Shapes: fields ``e: [B, M, D]`` (``M = F + K`` numerical and categorical fields, from the
``features`` stem without a class token); per head ``[B, H, M, K]``; read-out from the
concatenated field vectors ``[B, M * D]`` to ``[B, num_classes]`` or ``[B]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_divisible, check_positive_int
from mixerlab.layers.spec import Spec
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.stems import FeatureTokenizer
from mixerlab.models.tabular_models import TableModel, check_own_layers, output_size
from mixerlab.registry import MODELS


class InteractingLayer(nn.Module):
    """AutoInt's interacting layer (arXiv:1810.11921), eqs. 5-8.

    Per head ``h``: ``a^h_{m,k} = softmax_k(<W_Q^h e_m, W_K^h e_k>)``, ``ẽ^h_m = sum_k a^h_{m,k}
    W_V^h e_k``; the heads are concatenated and added to a residual projection of the input:
    ``e'_m = ReLU(ẽ^1_m ⊕ ... ⊕ ẽ^H_m + W_Res e_m)``. The score is the plain inner product, as in
    the paper (no ``1/sqrt(K)`` scale). ``[B, M, D] -> [B, M, D]``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        check_divisible("autoint", "dim", dim, "num_heads", num_heads)
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.residual = nn.Linear(dim, dim, bias=False)

    def forward(self, e: Tensor) -> Tensor:
        q, k, v = (
            rearrange(f(e), "b m (h k) -> b h m k", h=self.num_heads)
            for f in (self.query, self.key, self.value)
        )
        attn = torch.einsum("bhmk,bhnk->bhmn", q, k).softmax(dim=-1)
        mixed = rearrange(torch.einsum("bhmn,bhnk->bhmk", attn, v), "b h m k -> b m (h k)")
        return torch.relu(mixed + self.residual(e))


class AutoInt(TableModel):
    """AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks (arXiv:1810.11921).

    Field embeddings (the FT-Transformer tokenizer: ``x_j w_j + b_j`` for a numerical field, a row
    of the field's table for a categorical one; the paper's ``x_j v_j`` plus a per-field bias),
    ``depth`` interacting layers, and a linear read-out of the concatenated field vectors (eq. 9).
    ``inputs = {"numerical": [B, F], "categorical": [B, K]}``.
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        depth: int,
        num_heads: int,
        out_features: int,
        squeeze: bool,
        cardinalities: list[int] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("autoint", "depth", depth)
        check_positive_int("autoint", "num_heads", num_heads)
        self.stem = FeatureTokenizer(num_features, dim, cardinalities, class_token=False)
        self.layers = nn.ModuleList(InteractingLayer(dim, num_heads) for _ in range(depth))
        self.head = nn.Linear(self.stem.num_tokens() * dim, out_features)
        self.squeeze = squeeze

    def interactions(self, inputs: dict[str, Tensor], depth: int | None = None) -> Tensor:
        """Field vectors ``[B, M, D]`` after the first ``depth`` interacting layers (all by default)."""
        e, _ = self.stem(inputs)
        for layer in self.layers[:depth]:
            e = layer(e)
        return e

    def forward(self, inputs: dict[str, Tensor], *, state: State | None = None, mask: Tensor | None = None):
        e = self.interactions(inputs)
        return self.read(self.head(rearrange(e, "b m d -> b (m d)"))), None


@MODELS.register(
    "autoint",
    paper="AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks",
    arxiv="1810.11921",
    summary="Table model: multi-head self-attention over field embeddings with residual projections.",
    test_kwargs={"num_features": 3, "cardinalities": [4], "num_classes": 2, "dim": 8, "depth": 2},
    meta={"kinds": ("classify", "regress")},
)
def autoint(
    *,
    num_features: int,
    cardinalities: list[int] | None = None,
    num_classes: int | None = None,
    num_outputs: int | None = None,
    dim: int = 16,
    depth: int = 3,
    num_heads: int = 2,
    mixer: Spec = "none",
    channel_mixer: Spec = "none",
    norm: Spec = "none",
) -> AutoInt:
    """AutoInt (arXiv:1810.11921) for a table task: ``num_classes`` logits or ``num_outputs`` values.

    The paper's setting is 3 interacting layers of 2 heads; ``mixer``, ``channel_mixer`` and
    ``norm`` must stay ``"none"`` (the interacting layer is the model's own).
    """
    check_own_layers("autoint", mixer=mixer, channel_mixer=channel_mixer, norm=norm)
    out = output_size("autoint", num_classes, num_outputs)
    return AutoInt(num_features, dim, depth, num_heads, out, num_classes is None and out == 1, cardinalities)
