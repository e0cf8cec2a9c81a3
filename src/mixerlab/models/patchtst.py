"""PatchTST, "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers" (arXiv:2211.14730).

Channel independence: each channel of a multivariate series is its own univariate sequence
through one shared model (series stem with RevIN, a backbone of any registered token mixer,
the flatten head), so no channel's forecast reads another channel's history. The ``forecaster``
model instead flattens every channel of a patch into one token (channel mixing).

Shapes: ``series [B, L, C] -> [B * C, L, 1]`` through ``Model`` ``-> [B * C, horizon, 1] ->
[B, horizon, C]``.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.spec import Spec, build
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.backbone import Backbone
from mixerlab.models.heads import ForecastHead
from mixerlab.models.model import Model
from mixerlab.models.stems import SeriesEmbedding
from mixerlab.registry import MODELS, STEMS


class ChannelIndependentModel(Model):
    """PatchTST's channel independence (arXiv:2211.14730): every channel through the same model.

    ``forward(series [B, L, C]) -> ([B, horizon, C], state)``; the stem and head are built for
    one channel. The state (if any) is the backbone's over the ``B * C`` channel sequences.
    """

    def __init__(self, stem: SeriesEmbedding, backbone: Backbone, head: ForecastHead, num_channels: int):
        super().__init__(stem, backbone, head)
        self.num_channels = num_channels

    def forward(
        self, inputs: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        check(
            isinstance(inputs, Tensor) and inputs.dim() == 3 and inputs.shape[2] == self.num_channels,
            "patchtst",
            "inputs.shape",
            tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__,
            f"expected [B, {self.stem.context}, {self.num_channels}]",
        )
        b = inputs.shape[0]
        # [B, L, C] -> [B * C, L, 1]: channels become examples of one shared model.
        y, state = super().forward(rearrange(inputs, "b l c -> (b c) l 1"), state=state, mask=mask)
        return rearrange(y, "(b c) h 1 -> b h c", b=b), state


@MODELS.register(
    "patchtst",
    paper="A Time Series is Worth 64 Words: Long-term Forecasting with Transformers (PatchTST)",
    arxiv="2211.14730",
    summary="PatchTST: channel-independent patched series with RevIN, any mixer as the backbone.",
    test_kwargs={"context": 13, "horizon": 5, "num_channels": 1, "dim": 8, "depth": 1, "patch_len": 4},
    meta={"kinds": ("forecast",)},
)
def patchtst(
    *,
    context: int,
    horizon: int,
    num_channels: int = 1,
    dim: int = 64,
    depth: int = 2,
    mixer: Spec | list[Spec] = "attention",
    channel_mixer: Spec | list[Spec] = "swiglu",
    norm: Spec = "rmsnorm",
    mixing: Spec = "noncausal",
    patch_len: int = 8,
    revin: bool = True,
) -> ChannelIndependentModel:
    """PatchTST (arXiv:2211.14730) for a forecast task, channel-independent, with any registered mixer.

    ``patch_len`` and ``revin`` go to the series stem (built for one channel); ``mixing`` is
    non-causal by default, as PatchTST's encoder.
    """
    check_positive_int("patchtst", "num_channels", num_channels)
    # Built in the module order (stem, backbone, head) so that a seeded build draws its weights in
    # the order reset_all does (a materialised meta build is the same model, bit for bit).
    stem = build(STEMS, "series", context=context, num_channels=1, dim=dim, patch_len=patch_len, revin=revin)
    backbone = Backbone(
        dim=dim,
        depth=depth,
        mixer=mixer,
        channel_mixer=channel_mixer,
        norm=norm,
        mixing=mixing,
        grid=stem.grid,
        num_prefix_tokens=stem.num_prefix_tokens,
    )
    head = ForecastHead(dim, stem.num_tokens(), horizon, num_channels=1)
    return ChannelIndependentModel(stem, backbone, head, num_channels)
