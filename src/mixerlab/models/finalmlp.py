"""FinalMLP (arXiv:2304.03012): two gated MLP streams fused by multi-head bilinear interaction.

Shapes: field embeddings ``[B, M, D]`` flattened to ``e: [B, M * D]``; each stream ``[B, M * D]``;
per fusion head ``[B, H, K]`` with ``K = M * D / H``; output ``[B, num_classes]`` or ``[B]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.channel_mixers.finalmlp_gate import FinalMLPGate
from mixerlab.layers.spec import Spec
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.stems import FeatureTokenizer
from mixerlab.models.tabular_models import TableModel, check_own_layers, output_size
from mixerlab.registry import MODELS


class BilinearFusion(nn.Module):
    """FinalMLP's interaction aggregation (arXiv:2304.03012, eq. 8 and its multi-head form).

    ``y = b + w_1^T o_1 + w_2^T o_2 + sum_h o_{1,h}^T W_{3,h} o_{2,h}``: each stream's output is cut
    into ``num_heads`` chunks of ``K`` and only matching chunks interact, which keeps ``W_3`` at
    ``H K^2`` per output instead of ``(H K)^2``. ``o_1, o_2: [B, W] -> [B, out]``.
    """

    def __init__(self, width: int, num_heads: int, out_features: int) -> None:
        super().__init__()
        check_positive_int("finalmlp", "fusion_heads", num_heads)
        check_divisible("finalmlp", "stream width (fields x dim)", width, "fusion_heads", num_heads)
        self.num_heads = num_heads
        self.first = nn.Linear(width, out_features)  # w_1 and the bias b
        self.second = nn.Linear(width, out_features, bias=False)  # w_2
        k = width // num_heads
        self.interaction = nn.Parameter(torch.empty(num_heads, k, k, out_features))  # W_3
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        k = self.interaction.shape[1]
        nn.init.uniform_(self.interaction, -1 / k, 1 / k)

    def bilinear(self, o1: Tensor, o2: Tensor) -> Tensor:
        """The interaction term ``sum_h o_{1,h}^T W_{3,h} o_{2,h}``: ``[B, W], [B, W] -> [B, out]``."""
        a = rearrange(o1, "b (h k) -> b h k", h=self.num_heads)
        b = rearrange(o2, "b (h j) -> b h j", h=self.num_heads)
        return torch.einsum("bhk,hkjo,bhj->bo", a, self.interaction, b)

    def forward(self, o1: Tensor, o2: Tensor) -> Tensor:
        return self.first(o1) + self.second(o2) + self.bilinear(o1, o2)


class FinalMLP(TableModel):
    """FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction (arXiv:2304.03012).

    The fields' embeddings (FT-Transformer tokenizer, no class token), concatenated, feed two MLP
    streams, each behind its own feature gate ``2 sigmoid(MLP(e))`` (the ``finalmlp_gate`` channel
    mixer), and the two stream outputs meet in the multi-head bilinear fusion.
    ``inputs = {"numerical": [B, F], "categorical": [B, K]}``.
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        out_features: int,
        squeeze: bool,
        cardinalities: list[int] | None = None,
        hidden_dim: int = 64,
        gate_dim: int | None = None,
        fusion_heads: int = 2,
    ) -> None:
        super().__init__()
        self.stem = FeatureTokenizer(num_features, dim, cardinalities, class_token=False)
        width = self.stem.num_tokens() * dim
        self.stream1 = FinalMLPGate(width, hidden_dim=hidden_dim, gate_dim=gate_dim)
        self.stream2 = FinalMLPGate(width, hidden_dim=hidden_dim, gate_dim=gate_dim)
        self.fusion = BilinearFusion(width, fusion_heads, out_features)
        self.squeeze = squeeze

    def streams(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The two streams' outputs ``[B, M * D]`` each."""
        e = rearrange(self.stem(inputs)[0], "b m d -> b (m d)")
        return self.stream1(e), self.stream2(e)

    def forward(self, inputs: dict[str, Tensor], *, state: State | None = None, mask: Tensor | None = None):
        return self.read(self.fusion(*self.streams(inputs))), None


@MODELS.register(
    "finalmlp",
    paper="FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction",
    arxiv="2304.03012",
    summary="Table model: two feature-gated MLP streams fused by multi-head bilinear interaction.",
    test_kwargs={
        "num_features": 3,
        "cardinalities": [4],
        "num_classes": 2,
        "dim": 4,
        "hidden_dim": 8,
        "depth": 1,
    },
    meta={"kinds": ("classify", "regress")},
)
def finalmlp(
    *,
    num_features: int,
    cardinalities: list[int] | None = None,
    num_classes: int | None = None,
    num_outputs: int | None = None,
    dim: int = 8,
    depth: int = 1,
    hidden_dim: int = 64,
    gate_dim: int | None = None,
    fusion_heads: int = 2,
    mixer: Spec = "none",
    channel_mixer: Spec = "none",
    norm: Spec = "none",
) -> FinalMLP:
    """FinalMLP (arXiv:2304.03012) for a table task. Each stream is one gated MLP of ``hidden_dim``.

    ``depth`` must be 1 (a stream is one ``finalmlp_gate`` MLP); ``mixer``, ``channel_mixer`` and
    ``norm`` must stay ``"none"``.
    """
    check_own_layers("finalmlp", mixer=mixer, channel_mixer=channel_mixer, norm=norm)
    check(depth == 1, "finalmlp", "depth", depth, "1: each stream is one gated MLP (set depth: 1)")
    out = output_size("finalmlp", num_classes, num_outputs)
    return FinalMLP(
        num_features,
        dim,
        out,
        num_classes is None and out == 1,
        cardinalities,
        hidden_dim,
        gate_dim,
        fusion_heads,
    )
