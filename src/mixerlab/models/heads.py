"""Heads: read a backbone's tokens ``[B, T, D]`` out as the task's prediction.

Every head is called as ``head(h, stem, context)``: the stem is passed so that a head can tie its
weights to it (the LM head), pool its class token (``stem.num_prefix_tokens``) or undo its
normalisation (the forecast head and RevIN).

Shapes: lm ``[B, T, V]``; classify ``[B, num_classes]``; regress ``[B]`` (``[B, K]`` for
``num_outputs = K > 1``); forecast ``[B, horizon, C]``.
"""

from __future__ import annotations

from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.models.stems import Context, Stem
from mixerlab.registry import HEADS

POOLINGS = ("cls", "mean")


@HEADS.register(
    "lm",
    meta={"kind": "next_token"},
    paper="Using the Output Embedding to Improve Language Models (tied weights)",
    arxiv="1608.05859",
    test_kwargs={"dim": 8, "vocab_size": 11},
)
class LMHead(nn.Linear):
    """Next-token logits ``[B, T, V]``, optionally tied to the token stem (arXiv:1608.05859)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__(dim, vocab_size, bias=False)

    def forward(self, h: Tensor, stem: Stem | None = None, context: Context | None = None) -> Tensor:
        return super().forward(h)


def _pool(h: Tensor, pool: str, stem: Stem | None) -> Tensor:
    """``[B, T, D] -> [B, D]``: the class token, or the mean over the other tokens."""
    prefix = 0 if stem is None else stem.num_prefix_tokens
    if pool == "cls":
        check(prefix > 0, "head", "pool", pool, "'cls' needs a stem with a class token; use 'mean'")
        return h[:, 0]
    return h[:, prefix:].mean(dim=1)


@HEADS.register(
    "classify",
    meta={"kind": "classify"},
    paper="An Image is Worth 16x16 Words (class-token classification head)",
    arxiv="2010.11929",
    test_kwargs={"dim": 8, "num_classes": 3, "pool": "mean"},
)
class ClassificationHead(nn.Module):
    """Class logits ``[B, num_classes]`` from the class token or the mean token (arXiv:2010.11929)."""

    def __init__(self, dim: int, num_classes: int, pool: str = "cls") -> None:
        super().__init__()
        check_positive_int("classify head", "num_classes", num_classes)
        check_choice("classify head", "pool", pool, POOLINGS)
        self.pool = pool
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, h: Tensor, stem: Stem | None = None, context: Context | None = None) -> Tensor:
        return self.proj(_pool(h, self.pool, stem))


@HEADS.register(
    "regress",
    meta={"kind": "regress"},
    paper="Revisiting Deep Learning Models for Tabular Data (regression read-out)",
    arxiv="2106.11959",
    test_kwargs={"dim": 8, "pool": "mean"},
)
class RegressionHead(nn.Module):
    """Values ``[B]`` (or ``[B, num_outputs]``) from the pooled token (arXiv:2106.11959)."""

    def __init__(self, dim: int, num_outputs: int = 1, pool: str = "cls") -> None:
        super().__init__()
        check_positive_int("regress head", "num_outputs", num_outputs)
        check_choice("regress head", "pool", pool, POOLINGS)
        self.pool, self.num_outputs = pool, num_outputs
        self.proj = nn.Linear(dim, num_outputs)

    def forward(self, h: Tensor, stem: Stem | None = None, context: Context | None = None) -> Tensor:
        y = self.proj(_pool(h, self.pool, stem))
        return y.squeeze(-1) if self.num_outputs == 1 else y


@HEADS.register(
    "forecast",
    meta={"kind": "forecast"},
    paper="A Time Series is Worth 64 Words (flatten head); RevIN inverse",
    arxiv="2211.14730",
    test_kwargs={"dim": 8, "num_tokens": 3, "horizon": 5, "num_channels": 2},
)
class ForecastHead(nn.Module):
    """PatchTST's flatten head (arXiv:2211.14730): all tokens -> ``[B, horizon, C]``, then RevIN⁻¹.

    The stem's ``inverse`` (when it has one) maps the forecast back to the scale of its context.
    """

    def __init__(self, dim: int, num_tokens: int, horizon: int, num_channels: int = 1) -> None:
        super().__init__()
        for name, value in (("num_tokens", num_tokens), ("horizon", horizon), ("num_channels", num_channels)):
            check_positive_int("forecast head", name, value)
        self.num_tokens, self.horizon, self.num_channels = num_tokens, horizon, num_channels
        self.proj = nn.Linear(num_tokens * dim, horizon * num_channels)

    def forward(self, h: Tensor, stem: Stem | None = None, context: Context | None = None) -> Tensor:
        check(
            h.shape[1] == self.num_tokens,
            "forecast head",
            "tokens",
            h.shape[1],
            f"expected num_tokens={self.num_tokens}",
        )
        y = self.proj(h.flatten(1)).unflatten(-1, (self.horizon, self.num_channels))
        inverse = getattr(stem, "inverse", None)
        return y if inverse is None else inverse(y, context or {})
