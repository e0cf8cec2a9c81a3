"""The image mixers (layers/token_mixers/vision_*.py), each tested for what defines it.

The registry-wide suites (test_contract.py, test_noncausal.py, test_device_and_init.py) already
check shapes, gradients, non-causal reading, meta builds and errors for every one of them; here:
RMT's Manhattan decay (fast form against the per-pair reference in float64, outputs and
gradients), ConViT's convolution-like initialisation and gate, HorNet's order-(n+1) interaction,
MetaMixer's locality, ATConv's competing content-generated taps, the parameter-free pooling,
the token MLPs' channel-shared weights and NiNformer's gate, and the grid plumbing.
"""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.mixing import make_mixer
from mixerlab.ops.manhattan_retention import (
    manhattan_decay,
    manhattan_retention_parallel,
    manhattan_retention_reference,
)

B = 2


def build(name: str, **kwargs) -> mixerlab.TokenMixer:
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(name, **kwargs).double()


def tokens(T: int, dim: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- RMT: Manhattan self-attention ------------------------------------------------------------


@pytest.mark.parametrize(("grid", "prefix"), [((3, 5), 0), ((4, 3), 2), ((1, 7), 1)])
def test_manhattan_fast_form_matches_reference_in_float64(grid, prefix):
    T = prefix + grid[0] * grid[1]
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(B, T, 3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)
    )
    gammas = torch.tensor([0.5, 0.8, 0.95], dtype=torch.float64)
    out = manhattan_retention_parallel(q, k, v, gammas, grid, prefix)
    ref = manhattan_retention_reference(q, k, v, gammas, grid, prefix)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), w)
    grads_ref = torch.autograd.grad(ref, (q, k, v), w)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_manhattan_decay_is_gamma_to_the_city_block_distance():
    gammas = torch.tensor([0.5, 0.9], dtype=torch.float64)
    D = manhattan_decay(gammas, (3, 4), num_prefix_tokens=1)
    assert D.shape == (2, 13, 13)
    assert torch.all(D[:, 0] == 1) and torch.all(D[:, :, 0] == 1)  # the class token has no cell
    for n in range(12):
        for m in range(12):
            (y1, x1), (y2, x2) = divmod(n, 4), divmod(m, 4)
            expected = gammas ** (abs(y1 - y2) + abs(x1 - x2))
            torch.testing.assert_close(D[:, 1 + n, 1 + m], expected)


def test_manhattan_with_equal_scores_is_a_decay_weighted_average():
    # q = 0: softmax is uniform, so o_n = (1/T) sum_m gamma^d(n, m) v_m.
    grid, T = (2, 3), 6
    v = torch.randn(1, T, 1, 2, dtype=torch.float64)
    q = torch.zeros(1, T, 1, 2, dtype=torch.float64)
    gammas = torch.tensor([0.5], dtype=torch.float64)
    out = manhattan_retention_parallel(q, q, v, gammas, grid)
    expected = torch.einsum("nm,md->nd", manhattan_decay(gammas, grid)[0], v[0, :, 0]) / T
    torch.testing.assert_close(out[0, :, 0], expected)


# -- ConViT: GPSA -------------------------------------------------------------------------------


def test_gpsa_heads_start_as_convolution_taps():
    mixer = build("gpsa", dim=18, num_heads=9, locality_strength=4.0, grid=(5, 5))
    pos = mixer.positional_attention(5, 5, torch.float64)  # [H, 25, 25]
    centre = 2 * 5 + 2
    for i in range(3):
        for j in range(3):
            head = i + 3 * j
            dy, dx = i - 1, j - 1
            assert pos[head, centre].argmax().item() == (2 + dy) * 5 + (2 + dx), f"head {head}"


def test_gpsa_saturated_gate_ignores_content():
    mixer = build("gpsa", dim=16, num_heads=4, grid=(3, 3))
    with torch.no_grad():
        mixer.gating.fill_(50.0)  # sigmoid = 1: purely positional attention
    x = tokens(9, 16)
    y1, _ = mixer(x)
    with torch.no_grad():
        mixer.qk.weight.normal_()  # another query-key map changes nothing
    torch.testing.assert_close(mixer(x)[0], y1)
    with torch.no_grad():
        mixer.gating.fill_(-50.0)  # sigmoid = 0: content attention, which now differs
    assert not torch.allclose(mixer(x)[0], y1)


# -- HorNet: g^n Conv -----------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3])
def test_gnconv_is_an_interaction_of_order_n_plus_one(order):
    mixer = build("gnconv", dim=16, order=order, kernel_size=3, grid=(3, 4))
    with torch.no_grad():
        for module in mixer.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    x = tokens(12, 16)
    # Without biases: a product of order + 1 linear functions, homogeneous of degree order + 1.
    torch.testing.assert_close(mixer(2 * x)[0], 2 ** (order + 1) * mixer(x)[0])


# -- MetaMixer: FFNified attention ---------------------------------------------------------------


def test_ffnified_attention_is_local():
    mixer = build("ffnified", dim=8, kernel_size=3, grid=(1, 11))
    x = tokens(11, 8)
    y, _ = mixer(x)
    x2 = x.clone()
    x2[:, 5] += 1.0
    changed = (mixer(x2)[0] - y).abs().amax(dim=(0, 2)) > 0
    # Two 3-wide convolutions: a token reaches two cells on each side, no further.
    assert changed.tolist() == [False, False, False, True, True, True, True, True, False, False, False]


# -- ATConv ---------------------------------------------------------------------------------------


def test_atconv_taps_compete_and_depend_on_content():
    mixer = build("atconv", dim=8, num_heads=2, kernel_size=3, grid=(4, 5), num_prefix_tokens=1)
    x = tokens(21, 8)
    w = mixer.tap_weights(x)  # [B, heads, 9, 20]
    torch.testing.assert_close(w.sum(dim=2), torch.ones_like(w[:, :, 0]))  # a softmax over taps
    assert w[:, :, 0, 0].eq(0).all()  # the top-left cell's up-left tap lies outside the image
    assert not torch.allclose(w[..., 6], w[..., 7])  # adaptive routing: kernels differ by position


def test_atconv_of_a_constant_image_is_its_value():
    mixer = build("atconv", dim=8, num_heads=2, kernel_size=3, grid=(3, 3))
    x = tokens(1, 8).expand(B, 9, 8)
    y, _ = mixer(x)
    # The taps sum to one, also at the borders: each output is W_o W_v x.
    torch.testing.assert_close(y, mixer.proj_out(mixer.value(x)))


# -- Parameter-free layers -----------------------------------------------------------------------


def test_pfpool_spatial_operation_is_a_parameter_free_max():
    mixer = build("pfpool", dim=4, pool="max", kernel_size=3, grid=(3, 4))
    names = {n.split(".")[0] for n, _ in mixer.named_parameters()}
    assert names == {"proj_in", "proj_out"}  # all parameters are pointwise projections
    image = torch.randn(1, 4, 3, 4, dtype=torch.float64)
    pooled = mixer.spatial(image)
    for y in range(3):
        for x in range(4):
            window = image[..., max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            torch.testing.assert_close(pooled[..., y, x], window.amax(dim=(-2, -1)))


# -- Token MLPs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["token_mlp", "activator"])
def test_token_mlps_share_their_weights_across_channels(name):
    mixer = build(name, dim=6, grid=(2, 3), num_prefix_tokens=1)
    x = tokens(7, 6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    # Mixing along tokens with the same weights for every channel commutes with a channel shuffle.
    torch.testing.assert_close(mixer(x[..., perm])[0], mixer(x)[0][..., perm])


def test_ninformer_mixes_through_its_generated_gate_only():
    mixer = build("ninformer", dim=8, grid=(2, 3))
    x = tokens(6, 8)
    gate = mixer.gate_of(x)
    assert gate.gt(0).all() and gate.lt(1).all()
    with torch.no_grad():
        mixer.gate.bias.fill_(60.0)  # the gate saturates at 1: no token sees another
    torch.testing.assert_close(mixer(x)[0], mixer.proj_out(mixer.value(x)))


# -- grid plumbing and errors ---------------------------------------------------------------------


def test_image_mixers_get_the_grid_of_the_model_stem():
    model = mixerlab.create_model(
        "image_classifier", image_size=8, in_chans=1, num_classes=3, dim=16, depth=2, mixer="token_mlp"
    )
    for mixer in model.backbone.mixers:
        assert mixer.grid == (4, 4) and mixer.num_prefix_tokens == 1 and mixer.num_tokens == 17


def test_without_a_grid_a_conv_mixer_reads_one_row():
    mixer = build("gnconv", dim=16, order=2, kernel_size=3)
    assert mixer.num_tokens is None
    assert mixer(tokens(5, 16))[0].shape == (B, 5, 16)


def test_bad_options_and_uses_are_clear_errors():
    with pytest.raises(ConfigError, match="grid"):
        mixerlab.create_token_mixer("token_mlp", dim=8)  # weights sized by the grid
    with pytest.raises(ConfigError, match="causal"):
        mixerlab.create_token_mixer("gnconv", dim=8, causal=True)
    with pytest.raises(ConfigError, match="dim=10"):
        mixerlab.create_token_mixer("gnconv", dim=10, order=3)
    with pytest.raises(ConfigError, match="kernel_size=4"):
        mixerlab.create_token_mixer("pfpool", dim=8, kernel_size=4)
    with pytest.raises(ConfigError, match="pool='min'"):
        mixerlab.create_token_mixer("pfpool", dim=8, pool="min")
    with pytest.raises(ConfigError, match="grid"):
        mixerlab.create_token_mixer("gpsa", dim=8, num_heads=2, grid=(0, 3))
    mixer = build("manhattan", dim=8, num_heads=2, grid=(2, 3))
    with pytest.raises(ConfigError, match=r"x.shape\[1\]=7"):
        mixer(tokens(7, 8))
    with pytest.raises(ConfigError, match="mask"):
        mixer(tokens(6, 8), mask=torch.ones(B, 6, dtype=torch.bool))
    with pytest.raises(ConfigError, match="state"):
        mixer(tokens(6, 8), state={"k": torch.zeros(B, 1)})
    with pytest.raises(ConfigError, match="cu_seqlens"):
        mixer.forward_packed(tokens(6, 8)[:1], torch.tensor([0, 6]))
    with pytest.raises(ConfigError, match="'noncausal'"):
        make_mixer("gnconv", dim=8, mixing="2d", grid=(2, 2))
    with pytest.raises(ConfigError, match="leave it out of the spec"):
        make_mixer({"name": "gnconv", "grid": (2, 2)}, dim=8, mixing="noncausal", grid=(4, 4))
    with pytest.raises(ConfigError, match="noncausal"):
        mixerlab.create_model("lm", vocab_size=5, dim=8, depth=1, mixer="gnconv")
    with pytest.raises(ConfigError, match="patch_size"):
        mixerlab.create_model(
            "image_classifier",
            image_size=8,
            in_chans=1,
            num_classes=3,
            mixer="gnconv",
            stem={"name": "patch", "patch_size": 3},
        )
