"""Model(stem, backbone, head): every stem, head and named model, old checkpoints, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.registry import HEADS, MODELS, STEMS

DATA = Path(__file__).parent / "data"


def stem_inputs(name: str, stem, batch: int = 3):
    g = torch.Generator().manual_seed(0)
    if name == "token":
        return torch.randint(0, stem.vocab_size, (batch, 9), generator=g)
    if name == "patch":
        return torch.rand(batch, stem.in_chans, stem.image_size, stem.image_size, generator=g)
    if name == "features":
        cats = torch.stack([torch.randint(0, c, (batch,), generator=g) for c in stem.cardinalities], dim=1)
        return {"numerical": torch.randn(batch, stem.num_features, generator=g), "categorical": cats}
    if name == "series":
        return torch.randn(batch, stem.context, stem.num_channels, generator=g) * 5 + 3
    raise AssertionError(f"no inputs for stem {name!r}: add them here")


@pytest.mark.parametrize("name", STEMS.list())
def test_every_stem_makes_tokens_of_its_declared_count(name):
    entry = STEMS.entry(name)
    assert entry.paper and entry.arxiv and entry.arxiv in (entry.builder.__doc__ or "").splitlines()[0]
    stem = mixerlab.registry.STEMS.create(name, **entry.test_kwargs)
    tokens, context = stem(stem_inputs(name, stem))
    assert tokens.dim() == 3 and tokens.shape[0] == 3 and tokens.shape[-1] == entry.test_kwargs["dim"]
    if stem.num_tokens() is not None:
        assert tokens.shape[1] == stem.num_tokens()
    tokens.sum().backward()
    assert all(p.grad is not None for p in stem.parameters() if p.requires_grad)
    with pytest.raises(ConfigError):
        stem(torch.zeros(3, 2, 2, 2, 2))  # a shape no stem takes


def test_patch_stem_orders_patches_row_major_with_the_class_token_first():
    stem = STEMS.create("patch", image_size=4, patch_size=2, in_chans=1, dim=4)
    with torch.no_grad():
        stem.proj.weight.zero_()
        stem.proj.weight[0, 0] = 1.0  # token feature 0 = the patch's top-left pixel
        stem.proj.bias.zero_()
        stem.row_pos.zero_()
        stem.col_pos.zero_()
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    tokens, _ = stem(image)
    assert stem.grid == (2, 2) and tokens.shape == (1, 5, 4)
    assert tokens[0, 1:, 0].tolist() == [0.0, 2.0, 8.0, 10.0]


def test_feature_tokenizer_gives_each_field_its_own_token():
    stem = STEMS.create("features", num_features=2, cardinalities=[3, 2], dim=4, class_token=False)
    x = {"numerical": torch.tensor([[1.0, 0.0]]), "categorical": torch.tensor([[2, 1]])}
    tokens, _ = stem(x)
    torch.testing.assert_close(tokens[0, 0], stem.num_weight[0] + stem.num_bias[0])
    torch.testing.assert_close(tokens[0, 1], stem.num_bias[1])
    torch.testing.assert_close(tokens[0, 3], stem.cat_embed.weight[3 + 1] + stem.cat_bias[1])


@pytest.mark.parametrize("name", HEADS.list())
def test_every_head_reads_its_kind(name):
    entry = HEADS.entry(name)
    head = HEADS.create(name, **entry.test_kwargs)
    tokens = entry.test_kwargs.get("num_tokens", 6)
    y = head(torch.randn(2, tokens, entry.test_kwargs["dim"]), None, {})
    kinds = entry.meta.get("kinds") or (entry.meta["kind"],)
    expected = {
        "next_token": (2, tokens, entry.test_kwargs.get("vocab_size")),
        "classify": (2, entry.test_kwargs.get("num_classes")),
        "regress": (2,),
        "forecast": (2, entry.test_kwargs.get("horizon"), entry.test_kwargs.get("num_channels")),
    }[kinds[0]]
    assert tuple(y.shape) == expected


def model_inputs(model, batch: int = 2):
    name = {
        "TokenEmbedding": "token",
        "PatchEmbedding": "patch",
        "FeatureTokenizer": "features",
        "SeriesEmbedding": "series",
    }[type(model.stem).__name__]
    return stem_inputs(name, model.stem, batch)


@pytest.mark.parametrize("name", MODELS.list())
def test_every_named_model_trains_every_parameter(name):
    torch.manual_seed(0)
    model = mixerlab.create_model(name, **MODELS.entry(name).test_kwargs)
    pred, _ = model(model_inputs(model))
    assert torch.isfinite(pred).all()
    pred.float().square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("mixing", ["noncausal", "2d"])
def test_image_model_mixes_noncausally_and_in_2d(mixing):
    torch.manual_seed(0)
    kwargs = {**MODELS.entry("image_classifier").test_kwargs, "mixer": "mingru", "mixing": mixing}
    model = mixerlab.create_model("image_classifier", **kwargs)
    images = torch.rand(1, 1, 8, 8)
    changed = images.clone()
    changed[..., -1, -1] += 1.0  # the last patch of the row-major order
    # The class token (read by the head) sees the last patch in every non-causal form.
    assert not torch.allclose(model(images)[0], model(changed)[0])


def test_forecaster_undoes_its_instance_normalisation():
    torch.manual_seed(0)
    model = mixerlab.create_model("forecaster", **MODELS.entry("forecaster").test_kwargs)
    x = torch.randn(2, 16, 1)
    y, _ = model(x)
    y2, _ = model(x * 3.0 + 5.0)  # RevIN: a forecast moves and scales with its context
    torch.testing.assert_close(y2, y * 3.0 + 5.0, rtol=1e-4, atol=1e-4)


def test_an_lm_checkpoint_saved_before_the_stem_split_loads_to_the_same_logits():
    saved = torch.load(DATA / "lm_before_model_split.pt", weights_only=True)
    assert "embed.weight" in saved["state_dict"]  # the key the old CausalLM wrote
    model = mixerlab.create_model("lm", **saved["spec"])
    model.load_state_dict(saved["state_dict"])
    logits, _ = model(saved["tokens"])
    torch.testing.assert_close(logits, saved["logits"], rtol=0, atol=0)


def test_sizes_and_mixings_that_do_not_fit_are_clear_errors():
    with pytest.raises(ConfigError, match="vocab_size"):
        mixerlab.create_model("image_classifier", image_size=8, in_chans=1, num_classes=3, vocab_size=5)
    with pytest.raises(ConfigError, match="mixing"):
        mixerlab.create_model("lm", vocab_size=5, dim=8, depth=1, mixing="noncausal")
    model = mixerlab.create_model("tabular", **MODELS.entry("tabular").test_kwargs)
    with pytest.raises(ConfigError, match="head"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="patch_size"):
        mixerlab.create_model(
            "image_classifier",
            image_size=8,
            in_chans=1,
            num_classes=3,
            stem={"name": "patch", "patch_size": 3},
        )
