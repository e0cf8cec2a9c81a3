"""Named models, one per modality: argument dicts for :func:`~mixerlab.models.model.compose`.

Each entry names a stem, a head and a mixing; everything else (``dim``, ``depth``, ``mixer``,
``channel_mixer``, ``norm``) and the task's sizes are keyword arguments of ``create_model``. A
key given to ``create_model`` replaces the entry's, e.g. ``stem={"name": "patch", "patch_size": 4}``.

Image models take two more arguments (:func:`image_model`): ``stages``, a pyramid of stages with
patch merging between them (:class:`~mixerlab.models.backbone.StageBackbone`), and
``token_reduction``, EViT's token reorganisation (:mod:`mixerlab.models.token_reduction`).
``scaling_mlp`` is the pure MLP of "Scaling MLPs" on the flattened image.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from mixerlab.errors import ConfigError, check
from mixerlab.layers.spec import Spec, build, split_spec
from mixerlab.models.backbone import Backbone, MLPBackbone, StageBackbone
from mixerlab.models.model import Model, compose
from mixerlab.models.stems import PatchEmbedding
from mixerlab.registry import HEADS, MODELS, STEMS


def image_model(
    *,
    stem: Spec,
    head: Spec,
    dim: int = 64,
    depth: int = 2,
    mixer: Spec | list[Spec] = "attention",
    channel_mixer: Spec | list[Spec] = "swiglu",
    norm: Spec = "rmsnorm",
    mixing: Spec = "noncausal",
    stages: list[dict[str, Any]] | None = None,
    token_reduction: dict[str, Any] | None = None,
    **io: Any,
) -> Model:
    """An image model: :func:`compose` plus ``stages`` and ``token_reduction``.

    ``stages``: a list of dicts (keys ``depth``, ``dim``, ``mixer``, ``channel_mixer``); a stage
    leaves out ``depth`` to take ``depth`` and ``dim`` to take ``dim * 2**i`` (widths double as
    the grid halves), so ``stages=[{}, {}]`` is a two-stage pyramid of the model's width.
    ``token_reduction``: ``{"keep_ratio": 0.5, "layers": [1]}``, EViT before each listed layer
    (isotropic models only). Without either, this is exactly :func:`compose` (same weights).
    """
    if stages is None and token_reduction is None:
        return compose(
            stem=stem,
            head=head,
            dim=dim,
            depth=depth,
            mixer=mixer,
            channel_mixer=channel_mixer,
            norm=norm,
            mixing=mixing,
            **io,
        )
    check(
        stages is None or token_reduction is None,
        "model",
        "token_reduction",
        token_reduction,
        "EViT reorganises the tokens of an isotropic model; stages need the whole grid",
    )
    if stages is not None:
        check(isinstance(stages, list) and stages, "model", "stages", stages, "expected a non-empty list")
        stages = [
            {"depth": depth, "dim": dim * 2**i, **s} if isinstance(s, dict) else s
            for i, s in enumerate(stages)
        ]
    stem_io, head_io = _split_io(stem, head, io)
    width = stages[0].get("dim", dim) if stages else dim
    with torch.device("meta"):  # the stem's grid and prefix tokens, without drawing weights
        probe = build(STEMS, stem, dim=width, **stem_io)
    # Backbone first, then stem and head: the order compose draws weights in.
    if stages is not None:
        backbone = StageBackbone(
            stages,
            mixer=mixer,
            channel_mixer=channel_mixer,
            norm=norm,
            mixing=mixing,
            grid=probe.grid,
            num_prefix_tokens=probe.num_prefix_tokens,
        )
    else:
        backbone = Backbone(
            dim=dim,
            depth=depth,
            mixer=mixer,
            channel_mixer=channel_mixer,
            norm=norm,
            mixing=mixing,
            grid=probe.grid,
            num_prefix_tokens=probe.num_prefix_tokens,
            token_reduction=token_reduction,
        )
    built_stem = build(STEMS, stem, dim=width, **stem_io)
    built_head = build(HEADS, head, dim=backbone.dim, **head_io)
    return Model(built_stem, backbone, built_head)


def scaling_mlp(
    *,
    image_size: int,
    in_chans: int,
    num_classes: int,
    dim: int = 64,
    depth: int = 2,
    mixer: Spec = "none",
    channel_mixer: Spec | list[Spec] = "mlp",
    norm: Spec = "layernorm",
    head: Spec = {"name": "classify", "pool": "mean"},  # noqa: B006 - read only
) -> Model:
    """The pure MLP of "Scaling MLPs: A Tale of Inductive Bias" (arXiv:2306.13575).

    The image flattened into one token (a patch stem whose patch is the whole image, no class
    token), ``depth`` residual inverted-bottleneck MLP blocks (``channel_mixer``, default ``mlp``
    with ``expand=4``), layer norms, a linear classifier. ``mixer`` must stay ``"none"``: one token
    has nothing to mix, and any other value is an error rather than silently unused.
    """
    if mixer != "none":
        raise ConfigError(
            "scaling_mlp", "mixer", mixer, "'none': a pure MLP mixes no tokens (the image is one token)"
        )
    backbone = MLPBackbone(dim, depth, channel_mixer=channel_mixer, norm=norm)
    stem = PatchEmbedding(image_size, image_size, in_chans, dim, class_token=False)
    return Model(stem, backbone, build(HEADS, head, dim=dim, num_classes=num_classes))


def _split_io(stem: Spec, head: Spec, io: dict[str, Any]) -> tuple[dict, dict]:
    stem_takes = set(STEMS.entry(split_spec(stem, "stem")[0]).parameters())
    head_takes = set(HEADS.entry(split_spec(head, "head")[0]).parameters())
    for key, value in io.items():
        if key not in stem_takes and key not in head_takes:
            raise ConfigError(
                "model",
                key,
                value,
                f"neither the stem {split_spec(stem, 'stem')[0]!r} nor the head "
                f"{split_spec(head, 'head')[0]!r} takes it",
            )
    return (
        {k: v for k, v in io.items() if k in stem_takes},
        {k: v for k, v in io.items() if k in head_takes},
    )


BUILDERS: dict[str, dict[str, Any]] = {
    "lm": {"stem": "token", "head": "lm", "mixing": "causal", "tie_embeddings": True},
    "image_classifier": {
        "stem": {"name": "patch", "patch_size": 2},
        "head": {"name": "classify", "pool": "cls"},
        "mixing": "noncausal",
    },
    "tabular": {"stem": "features", "head": {"name": "classify", "pool": "cls"}, "mixing": "noncausal"},
    "forecaster": {"stem": {"name": "series", "patch_len": 8}, "head": "forecast", "mixing": "noncausal"},
    # ConvNet-like pyramid: no class token, mean-pooled head, two stages of HorNet's g^n Conv.
    "image_stages": {
        "stem": {"name": "patch", "patch_size": 2, "class_token": False},
        "head": {"name": "classify", "pool": "mean"},
        "mixing": "noncausal",
        "mixer": {"name": "gnconv", "kernel_size": 3},
        "stages": [{}, {}],
    },
}
# The image models take stages and token_reduction (image_model); the others are compose.
_BUILD = {"image_classifier": image_model, "image_stages": image_model}

# What each model is for (the task kinds it serves), a summary, and tiny sizes for the tests.
_ABOUT = {
    "lm": (
        ("next_token",),
        "Causal language model: token embedding, a (hybrid) stack of blocks, tied output head.",
        {"vocab_size": 11, "dim": 16, "depth": 2},
    ),
    "image_classifier": (
        ("classify",),
        "Image classifier: ViT patches with 2-D positions, non-causal blocks, class-token head.",
        {"image_size": 8, "in_chans": 1, "num_classes": 3, "dim": 16, "depth": 2},
    ),
    "image_stages": (
        ("classify",),
        "Pyramid image classifier: stages on halving grids with patch merging (HorNet/Swin layout).",
        {"image_size": 8, "in_chans": 1, "num_classes": 3, "dim": 8, "depth": 1},
    ),
    "tabular": (
        ("classify", "regress"),
        "Table model: FT-Transformer feature tokens, non-causal blocks, class-token head.",
        {"num_features": 3, "cardinalities": [4], "num_classes": 2, "dim": 16, "depth": 2},
    ),
    "forecaster": (
        ("forecast",),
        "Forecaster: RevIN-normalised series patches, non-causal blocks, flatten head (RevIN inverse).",
        {"context": 16, "horizon": 4, "num_channels": 1, "dim": 16, "depth": 2},
    ),
}

for _name, _arguments in BUILDERS.items():
    _kinds, _summary, _test_kwargs = _ABOUT[_name]
    MODELS.register(_name, summary=_summary, test_kwargs=_test_kwargs, meta={"kinds": _kinds})(
        functools.partial(_BUILD.get(_name, compose), **_arguments)
    )

MODELS.register(
    "scaling_mlp",
    paper="Scaling MLPs: A Tale of Inductive Bias",
    arxiv="2306.13575",
    summary="Pure MLP on the flattened image: residual inverted-bottleneck MLP blocks, no token mixing.",
    test_kwargs={"image_size": 8, "in_chans": 1, "num_classes": 3, "dim": 16, "depth": 2},
    meta={"kinds": ("classify",)},
)(functools.partial(scaling_mlp, head={"name": "classify", "pool": "mean"}))  # the trainer reads its head
