"""2-D scan orders and CrossScan2D (layers/wrappers.py), built through make_mixer(mixing="2d")."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers import CrossScan2D
from mixerlab.layers.mixing import make_mixer, mixer_class
from mixerlab.layers.wrappers import CROSS_SCAN, SCAN_ORDERS, scan_orders, valid_first_orders
from mixerlab.registry import TOKEN_MIXERS

B = 2
# Transposing an H == W grid swaps rows and columns, so each order becomes its transposed twin.
TRANSPOSED = {
    "row": "column",
    "column": "row",
    "row_reverse": "column_reverse",
    "column_reverse": "row_reverse",
}


def spec(name: str) -> dict:
    kwargs = dict(TOKEN_MIXERS.entry(name).test_kwargs)
    kwargs.pop("dim")
    return {"name": name, **kwargs}


def cross_scan(name: str, **options) -> CrossScan2D:
    torch.manual_seed(0)
    dim = TOKEN_MIXERS.entry(name).test_kwargs["dim"]
    return make_mixer(spec(name), dim=dim, mixing="2d", **options).double()


def tokens(mixer, seq_len: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, seq_len, mixer.dim, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("H", "W"), [(3, 5), (4, 4), (1, 6)])
def test_each_order_visits_every_cell_once_and_the_inverse_restores_the_layout(H, W):
    orders = scan_orders(H, W)
    assert set(orders) == set(SCAN_ORDERS) == set(CROSS_SCAN)
    x = torch.arange(H * W) * 10
    for order in orders.values():
        assert torch.equal(order.index.sort().values, torch.arange(H * W)), order.name
        assert torch.equal(x[order.index][order.inverse], x), order.name


def test_orders_read_the_grid_as_named():
    orders = scan_orders(2, 3)  # cells 0 1 2 / 3 4 5
    assert orders["row"].index.tolist() == [0, 1, 2, 3, 4, 5]
    assert orders["column"].index.tolist() == [0, 3, 1, 4, 2, 5]
    assert orders["row_reverse"].index.tolist() == [5, 4, 3, 2, 1, 0]
    assert orders["column_reverse"].index.tolist() == [5, 2, 4, 1, 3, 0]


def test_unknown_order_is_a_clear_error():
    with pytest.raises(ConfigError, match="diagonal"):
        scan_orders(3, 3, ["row", "diagonal"])


@pytest.mark.parametrize("name", ["gla", "mamba", "attention"])
def test_transposed_grid_with_transposed_orders_gives_the_transposed_output(name):
    side, prefix = 3, 1
    first = cross_scan(name, grid=(side, side), num_prefix_tokens=prefix)
    twin = cross_scan(
        name, grid=(side, side), num_prefix_tokens=prefix, orders=[TRANSPOSED[o] for o in CROSS_SCAN]
    )
    twin.load_state_dict(first.state_dict())  # shared weights: slot k of both holds the same mixer

    def transpose(x):
        grid = rearrange(x[:, prefix:], "b (h w) d -> b (w h) d", h=side)
        return torch.cat([x[:, :prefix], grid], dim=1)

    x = tokens(first, prefix + side * side)
    y, state = first(x)
    y_t, _ = twin(transpose(x))
    torch.testing.assert_close(y_t, transpose(y), rtol=1e-10, atol=1e-12)
    assert state == {} and first.state_size(10) == 0


def test_cross_scan_is_the_mean_of_its_scans():
    mixer = cross_scan("gla", grid=(2, 3), num_prefix_tokens=1, orders=["column", "row_reverse"])
    x = tokens(mixer, 7)
    expected = 0
    for inner, name in zip(mixer.mixers, ["column", "row_reverse"]):
        order = scan_orders(2, 3)[name]
        index = torch.cat([1 + order.index, torch.tensor([0])])  # the class token last in every scan
        y, _ = inner(x[:, index])
        expected = expected + y[:, index.argsort()] / 2
    torch.testing.assert_close(mixer(x)[0], expected)


def test_mode_reaches_every_scan():
    mixer = cross_scan("gla", grid=(2, 2))
    mixer.mode = "reference"
    assert [m.mode for m in mixer.mixers] == ["reference"] * 4


def test_bad_grid_is_a_clear_error():
    mixer = cross_scan("gla", grid=(3, 4), num_prefix_tokens=1)
    with pytest.raises(ConfigError, match=r"grid=\(3, 4\).*T = 12"):
        mixer(tokens(mixer, 12))  # one token short of 1 + 3 * 4
    with pytest.raises(ConfigError, match="grid"):
        make_mixer(spec("gla"), dim=16, mixing="2d")
    with pytest.raises(ConfigError, match="grid"):
        cross_scan("gla", grid=(3, 0))
    with pytest.raises(ConfigError, match="orders"):
        cross_scan("gla", grid=(3, 4), orders="row")


def test_no_state_and_no_mask():
    mixer = cross_scan("gla", grid=(2, 2))
    x = tokens(mixer, 4)
    with pytest.raises(ConfigError, match="state"):
        mixer(x, state={"S": torch.zeros(B, 1)})
    with pytest.raises(ConfigError, match="mask"):
        mixer(x, mask=torch.ones(B, 4, dtype=torch.bool))


def test_valid_first_orders():
    mask = torch.tensor([[True, True, True, False, False], [False, True, True, False, True]])
    forward, backward = valid_first_orders(mask)
    assert forward.tolist() == [[0, 1, 2, 3, 4], [1, 2, 4, 0, 3]]
    assert backward.tolist() == [[2, 1, 0, 3, 4], [4, 2, 1, 0, 3]]


@pytest.mark.parametrize("name", mixerlab.list_token_mixers())
def test_every_mixer_mixes_in_2d(name):
    # Image mixers have no causal form to scan with: their own non-causal form reads the grid.
    if mixer_class(name).noncausal == "none" or not mixer_class(name).causal:
        with pytest.raises(ConfigError, match="mixing"):
            cross_scan(name, grid=(2, 3), num_prefix_tokens=1)
        return
    mixer = cross_scan(name, grid=(2, 3), num_prefix_tokens=1)
    x = tokens(mixer, 7).requires_grad_()
    y, state = mixer(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and state == {}
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"


def test_a_class_token_reads_the_whole_grid_in_every_scan():
    mixer = cross_scan("gla", grid=(2, 3), num_prefix_tokens=1)
    x = tokens(mixer, 7)
    changed = x.clone()
    changed[:, 3] += 1.0  # one grid token
    assert not torch.allclose(mixer(x)[0][:, 0], mixer(changed)[0][:, 0])
