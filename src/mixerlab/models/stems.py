"""Stems: turn a task's inputs into tokens ``[B, T, D]`` for a backbone.

Each stem returns ``(tokens, context)``: ``context`` is a dict of what the head needs back from
the stem (the instance statistics of RevIN, the number of prefix tokens); it is empty for most.
A stem also exposes ``grid`` (``(H, W)`` of its patch grid, or None) and ``num_prefix_tokens``
(class tokens in front of the sequence), which 2-D mixing and pooling heads read.

Shapes: tokens ``[B, T] -> [B, T, D]``; images ``[B, C, H, W] -> [B, 1 + H/p * W/p, D]``; tables
``{"numerical": [B, F], "categorical": [B, K]} -> [B, 1 + F + K, D]``; series
``[B, L, C] -> [B, N, D]`` with ``N`` patches of length ``patch_len``.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.registry import STEMS

Context = dict[str, Any]


class Stem(nn.Module):
    """Base class: ``forward(inputs) -> (tokens [B, T, D], context)``."""

    grid: tuple[int, int] | None = None
    num_prefix_tokens: int = 0

    def num_tokens(self) -> int | None:
        """Tokens per example when that is fixed by the stem (patches, features), else None."""
        return None


@STEMS.register(
    "token",
    paper="Attention Is All You Need (token embedding)",
    arxiv="1706.03762",
    test_kwargs={"vocab_size": 11, "dim": 8},
)
class TokenEmbedding(Stem):
    """Token embedding (arXiv:1706.03762): ``tokens [B, T]`` int64 -> ``[B, T, D]``."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        check_positive_int("token stem", "vocab_size", vocab_size)
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Two draws, as nn.Embedding's own init followed by N(0, 0.02): seeded language models get
        # the same initial weights as before the stem existed, so stored results stay reproducible.
        nn.init.normal_(self.weight)
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Context]:
        check(
            isinstance(tokens, Tensor) and tokens.dim() == 2 and not tokens.is_floating_point(),
            "token stem",
            "inputs",
            tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__,
            "expected int64 tokens [B, T]",
        )
        return nn.functional.embedding(tokens, self.weight), {}


@STEMS.register(
    "patch",
    paper="An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    arxiv="2010.11929",
    test_kwargs={"image_size": 8, "patch_size": 2, "in_chans": 1, "dim": 8},
)
class PatchEmbedding(Stem):
    """ViT patch embedding (arXiv:2010.11929): non-overlapping ``p x p`` patches, 2-D positions.

    ``images [B, C, H, W]`` -> ``[B, class_token + (H/p)(W/p), D]``, patches in row-major order.
    Positions are the sum of a learned row and a learned column embedding (factorised 2-D
    positions), so the stem knows the grid and a 2-D scan can read it from ``grid``.
    """

    def __init__(
        self, image_size: int, patch_size: int, in_chans: int, dim: int, class_token: bool = True
    ) -> None:
        super().__init__()
        for name, value in (("image_size", image_size), ("patch_size", patch_size), ("in_chans", in_chans)):
            check_positive_int("patch stem", name, value)
        check(
            image_size % patch_size == 0,
            "patch stem",
            "patch_size",
            patch_size,
            f"must divide image_size={image_size}",
        )
        self.image_size, self.patch_size, self.in_chans = image_size, patch_size, in_chans
        side = image_size // patch_size
        self.grid = (side, side)
        self.num_prefix_tokens = int(class_token)
        self.proj = nn.Linear(in_chans * patch_size * patch_size, dim)
        self.row_pos = nn.Parameter(torch.zeros(side, dim))
        self.col_pos = nn.Parameter(torch.zeros(side, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The projection is drawn a second time (its own init ran when it was built): seeded models
        # keep the weights they always had, and reset_all (children first) draws in the same order.
        self.proj.reset_parameters()
        for p in (self.row_pos, self.col_pos, self.cls):
            if p is not None:
                nn.init.normal_(p, std=0.02)

    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.grid[0] * self.grid[1]

    def forward(self, images: Tensor) -> tuple[Tensor, Context]:
        size = self.image_size
        expected = (self.in_chans, size, size)
        if not isinstance(images, Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != expected:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ConfigError(
                "patch stem", "inputs.shape", got, f"expected [B, {', '.join(map(str, expected))}]"
            )
        p = self.patch_size
        patches = rearrange(images, "b c (h p) (w q) -> b h w (c p q)", p=p, q=p)
        pos = self.row_pos[:, None, :] + self.col_pos[None, :, :]  # [h, w, D]
        x = rearrange(self.proj(patches) + pos, "b h w d -> b (h w) d")
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        return x, {}


@STEMS.register(
    "features",
    paper="Revisiting Deep Learning Models for Tabular Data (FT-Transformer feature tokenizer)",
    arxiv="2106.11959",
    test_kwargs={"num_features": 3, "cardinalities": [4, 2], "dim": 8},
)
class FeatureTokenizer(Stem):
    """FT-Transformer's feature tokenizer (arXiv:2106.11959): every feature becomes a token.

    A numerical feature ``x_j`` becomes ``x_j W_j + b_j``; a categorical field with value ``c``
    becomes its own embedding row plus a per-field bias. A class token goes in front.
    ``{"numerical": [B, F], "categorical": [B, K]} -> [B, class_token + F + K, D]``.
    """

    def __init__(
        self, num_features: int, dim: int, cardinalities: list[int] | None = None, class_token: bool = True
    ) -> None:
        super().__init__()
        cardinalities = list(cardinalities or [])
        check(
            isinstance(num_features, int) and num_features >= 0,
            "features stem",
            "num_features",
            num_features,
            "expected an integer >= 0",
        )
        check(
            all(isinstance(c, int) and c > 0 for c in cardinalities),
            "features stem",
            "cardinalities",
            cardinalities,
            "expected positive integers",
        )
        check(
            num_features + len(cardinalities) > 0,
            "features stem",
            "num_features",
            num_features,
            "a table needs at least one numerical or categorical feature",
        )
        self.num_features, self.cardinalities = num_features, cardinalities
        self.num_prefix_tokens = int(class_token)
        self.num_weight = nn.Parameter(torch.empty(num_features, dim))
        self.num_bias = nn.Parameter(torch.empty(num_features, dim))
        # One table for every field, each field offset into it, plus a bias per field.
        self.register_buffer(
            "cat_offsets", torch.empty(len(cardinalities), dtype=torch.long), persistent=False
        )
        self.cat_embed = nn.Embedding(sum(cardinalities), dim) if cardinalities else None
        self.cat_bias = nn.Parameter(torch.empty(len(cardinalities), dim))
        self.cls = nn.Parameter(torch.empty(1, 1, dim)) if class_token else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Computed, not learned; recomputed here so that a meta-built stem works after to_empty.
        offsets = torch.tensor(
            [0, *self.cardinalities[:-1]], dtype=torch.long, device=self.cat_offsets.device
        )
        self.cat_offsets.copy_(offsets.cumsum(0))
        # FT-Transformer initialises the tokenizer uniformly in +-1/sqrt(d).
        bound = self.num_weight.shape[-1] ** -0.5
        for p in (self.num_weight, self.num_bias, self.cat_bias, self.cls):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        if self.cat_embed is not None:
            nn.init.uniform_(self.cat_embed.weight, -bound, bound)

    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.num_features + len(self.cardinalities)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Context]:
        check(isinstance(inputs, dict), "features stem", "inputs", type(inputs).__name__, "expected a dict")
        unknown = set(inputs) - {"numerical", "categorical"}
        check(not unknown, "features stem", "inputs", sorted(unknown), "keys are 'numerical', 'categorical'")
        parts = []
        if self.num_features:
            x = inputs.get("numerical")
            check(
                x is not None and tuple(x.shape[1:]) == (self.num_features,),
                "features stem",
                "inputs['numerical'].shape",
                None if x is None else tuple(x.shape),
                f"expected [B, {self.num_features}]",
            )
            parts.append(x[..., None] * self.num_weight + self.num_bias)
        if self.cardinalities:
            c = inputs.get("categorical")
            check(
                c is not None and tuple(c.shape[1:]) == (len(self.cardinalities),),
                "features stem",
                "inputs['categorical'].shape",
                None if c is None else tuple(c.shape),
                f"expected [B, {len(self.cardinalities)}]",
            )
            parts.append(self.cat_embed(c + self.cat_offsets) + self.cat_bias)
        x = torch.cat(parts, dim=1)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        return x, {}


@STEMS.register(
    "series",
    paper="A Time Series is Worth 64 Words: Long-term Forecasting with Transformers (patching); RevIN",
    arxiv="2211.14730",
    test_kwargs={"context": 12, "num_channels": 2, "patch_len": 4, "dim": 8},
)
class SeriesEmbedding(Stem):
    """PatchTST-style series patches (arXiv:2211.14730) with RevIN instance normalisation.

    Each example is normalised by its own per-channel mean and standard deviation over the
    context (reversible instance normalisation, Kim et al., ICLR 2022), with a learned affine
    map; the statistics go to the head in ``context`` so that the forecast is mapped back.
    ``series [B, L, C] -> [B, ceil(L / patch_len), D]`` (patches of every channel flattened
    together); a context that ``patch_len`` does not divide is padded in front with its first
    value, as PatchTST pads its end with the last.
    """

    def __init__(
        self, context: int, num_channels: int, dim: int, patch_len: int = 8, revin: bool = True
    ) -> None:
        super().__init__()
        for name, value in (("context", context), ("num_channels", num_channels), ("patch_len", patch_len)):
            check_positive_int("series stem", name, value)
        self.context, self.num_channels, self.patch_len, self.revin = context, num_channels, patch_len, revin
        self.proj = nn.Linear(patch_len * num_channels, dim)
        self.pad = -context % patch_len
        self.pos = nn.Parameter(torch.empty((context + self.pad) // patch_len, dim))
        self.affine_weight = nn.Parameter(torch.ones(num_channels))
        self.affine_bias = nn.Parameter(torch.zeros(num_channels))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.proj.reset_parameters()  # drawn a second time, as PatchEmbedding's (see there)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.ones_(self.affine_weight)
        nn.init.zeros_(self.affine_bias)

    def num_tokens(self) -> int:
        return (self.context + self.pad) // self.patch_len

    def forward(self, series: Tensor) -> tuple[Tensor, Context]:
        expected = (self.context, self.num_channels)
        if not isinstance(series, Tensor) or series.dim() != 3 or tuple(series.shape[1:]) != expected:
            got = tuple(series.shape) if isinstance(series, Tensor) else type(series).__name__
            raise ConfigError(
                "series stem", "inputs.shape", got, f"expected [B, {expected[0]}, {expected[1]}]"
            )
        context: Context = {}
        if self.revin:
            mean = series.mean(dim=1, keepdim=True)
            std = (series.var(dim=1, keepdim=True, unbiased=False) + 1e-5).sqrt()
            series = (series - mean) / std * self.affine_weight + self.affine_bias
            context["revin"] = (mean, std)
        if self.pad:
            series = torch.cat([series[:, :1].expand(-1, self.pad, -1), series], dim=1)
        patches = rearrange(series, "b (n p) c -> b n (p c)", p=self.patch_len)
        return self.proj(patches) + self.pos, context

    def inverse(self, y: Tensor, context: Context) -> Tensor:
        """Undo RevIN on a forecast ``y: [B, horizon, C]`` with the statistics of its context."""
        if not self.revin:
            return y
        mean, std = context["revin"]
        # RevIN's own inverse adds eps^2 to the learned scale so that it never divides by zero.
        return (y - self.affine_bias) / (self.affine_weight + 1e-10) * std + mean
