"""Convolution-like image mixers: local spatial operators on the patch grid.

- ``gnconv``: HorNet's recursive gated convolution g^n Conv (arXiv:2207.14284);
- ``ffnified``: MetaMixer's FFNified attention (arXiv:2406.02021): query-key and
  coefficient-value interactions as large-kernel depthwise convolutions, GELU for softmax;
- ``atconv``: Attentive Convolution (arXiv:2510.20092): content-generated kernels whose taps
  compete through a softmax, as attention scores do;
- ``pfpool``: the parameter-free spatial operation of "Learning Features with Parameter-Free
  Layers" (arXiv:2202.02777): max (or average) pooling in place of a depthwise convolution.

All are :class:`~mixerlab.layers.token_mixers.vision_base.ImageMixer`: non-causal, stateless,
built with the model's grid; a prefix (class) token reads the mean of the grid's spatial output.

Shapes: ``x: [B, T, D]`` with ``T = P + H W``; grids ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.token_mixers.base import resolve_heads
from mixerlab.layers.token_mixers.vision_base import GridSpec, ImageMixer
from mixerlab.registry import TOKEN_MIXERS

_GRID_TEST = {"grid": (4, 8), "num_prefix_tokens": 1}  # 33 tokens: the contract suite's odd length


def _check_kernel(owner: str, kernel_size: int) -> None:
    check_positive_int(owner, "kernel_size", kernel_size)
    check(kernel_size % 2 == 1, owner, "kernel_size", kernel_size, "expected an odd size (centred window)")


def _depthwise(channels: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)


@TOKEN_MIXERS.register(
    "gnconv",
    paper="HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
    arxiv="2207.14284",
    test_kwargs={"dim": 16, "order": 3, "kernel_size": 3, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T D k^2)", "memory": "O(T D)", "state_kind": "fixed"},
)
class RecursiveGatedConv(ImageMixer):
    """HorNet's recursive gated convolution g^n Conv (arXiv:2207.14284).

    ``[p_0, q_0 .. q_{n-1}] = W_in x`` (widths ``C/2^{n-1}, C/2^{n-1}, .., C``), then
    ``p_{k+1} = g_k(p_k) * f_k(q_k)`` with ``f`` one depthwise ``k x k`` convolution over all
    ``q`` (scaled by ``1/3`` as in the authors' code, which keeps the product of ``n`` gates near
    unit scale at init) and ``g_k`` linear maps raising the width; ``y = W_out p_n``. Without
    biases the output is a homogeneous polynomial of degree ``n + 1`` in ``x``: the ``n``-th
    order spatial interaction the paper is named for.
    """

    def __init__(
        self,
        dim: int,
        order: int = 3,
        kernel_size: int = 7,
        scale: float = 1 / 3,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        check_positive_int("gnconv", "order", order)
        _check_kernel("gnconv", kernel_size)
        check(
            dim % 2 ** (order - 1) == 0,
            "gnconv",
            "dim",
            dim,
            f"must be divisible by 2^(order-1) = {2 ** (order - 1)} (widths halve per order)",
        )
        self.order, self.scale = order, scale
        self.dims = [dim // 2**i for i in range(order)][::-1]  # narrowest first
        self.proj_in = nn.Linear(dim, 2 * dim)
        self.dwconv = _depthwise(sum(self.dims), kernel_size)
        self.pws = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.dims[:-1], self.dims[1:]))
        self.proj_out = nn.Linear(dim, dim)

    def mix(self, x: Tensor) -> Tensor:
        p, q = self.proj_in(x).split([self.dims[0], sum(self.dims)], dim=-1)
        prefix, image = self.split(q)
        image = self.dwconv(image) * self.scale
        gates = self.merge(self.grid_mean(image, prefix.shape[1]), image).split(self.dims, dim=-1)
        p = p * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            p = pw(p) * gate
        return self.proj_out(p)


@TOKEN_MIXERS.register(
    "ffnified",
    paper="MetaMixer Is All You Need (FFNified attention of FFNet)",
    arxiv="2406.02021",
    test_kwargs={"dim": 16, "kernel_size": 3, "expand": 2, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T D k^2)", "memory": "O(T D)", "state_kind": "fixed"},
)
class FFNifiedAttention(ImageMixer):
    """MetaMixer's FFNified attention (arXiv:2406.02021): conv query-key, GELU, conv coefficient-value.

    Attention reads ``softmax(q K^T) V``; MetaMixer keeps the query-key-value structure and makes
    it FFN-like: ``y = W_o DWConv_v(GELU(DWConv_k(W_i x)))``. The first depthwise ``k x k``
    convolution plays the keys (a bank of local patterns matched against the query tokens), GELU
    replaces softmax (no normalisation over positions), the second convolution plays the values.
    The receptive field is ``2 (k - 1) + 1`` cells wide: local, unlike attention.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        expand: int = 2,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        _check_kernel("ffnified", kernel_size)
        check_positive_int("ffnified", "expand", expand)
        hidden = expand * dim
        self.proj_in = nn.Linear(dim, hidden)
        self.key_conv = _depthwise(hidden, kernel_size)
        self.value_conv = _depthwise(hidden, kernel_size)
        self.proj_out = nn.Linear(hidden, dim)

    def mix(self, x: Tensor) -> Tensor:
        prefix, image = self.split(self.proj_in(x))
        image = self.value_conv(F.gelu(self.key_conv(image)))
        return self.proj_out(self.merge(self.grid_mean(image, prefix.shape[1]), image))


@TOKEN_MIXERS.register(
    "atconv",
    paper="Attentive Convolution: Unifying the Expressivity of Self-Attention with Convolutional Efficiency",
    arxiv="2510.20092",
    test_kwargs={"dim": 16, "num_heads": 2, "kernel_size": 3, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T D k^2)", "memory": "O(T D k^2)", "state_kind": "fixed"},
)
class AttentiveConv(ImageMixer):
    """Attentive Convolution, ATConv (arXiv:2510.20092): content-adaptive kernels that compete.

    The paper names what self-attention has and a convolution lacks: *adaptive routing* (the
    weights depend on the content) and *lateral inhibition* (the weights compete). Per head ``h``
    and position ``p`` a ``k x k`` kernel is generated from the token, ``a_p = W_a x_p + b_h``
    (``b_h``: a learned static kernel, the convolution it starts from), its taps compete through a
    softmax over the taps that fall inside the image, and ``y_p = W_o sum_t softmax(a_p)_t
    v_{p+t}`` with ``v = W_v x``. Our reading of the mechanism from the paper's abstract; the
    authors' exact parameterisation may differ.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        kernel_size: int = 3,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        resolve_heads("atconv", dim, num_heads, None)
        _check_kernel("atconv", kernel_size)
        self.num_heads, self.kernel_size = num_heads, kernel_size
        taps = kernel_size * kernel_size
        self.value = nn.Linear(dim, dim)
        self.kernel = nn.Linear(dim, num_heads * taps, bias=False)
        self.static_kernel = nn.Parameter(torch.empty(num_heads, taps))
        self.proj_out = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Start from a uniform local average: every tap equal, the content term learns to route.
        nn.init.zeros_(self.static_kernel)

    def tap_weights(self, x: Tensor) -> Tensor:
        """Softmax-competing kernel of every grid position, ``[B, heads, k^2, H W]``."""
        H, W = self._grid_of(x)
        k = self.kernel_size
        logits = rearrange(
            self.kernel(x[:, self.num_prefix_tokens :]), "b n (h t) -> b h t n", h=self.num_heads
        )
        logits = logits + self.static_kernel[None, :, :, None]
        # Taps outside the image take no part in the competition (no zero-padding pulled in).
        inside = F.unfold(x.new_ones(1, 1, H, W), k, padding=k // 2)  # [1, k^2, H W]
        return logits.masked_fill(inside[:, None] == 0, float("-inf")).softmax(dim=2)

    def mix(self, x: Tensor) -> Tensor:
        weights = self.tap_weights(x)
        prefix, image = self.split(self.value(x))
        H, W, k = image.shape[-2], image.shape[-1], self.kernel_size
        # [B, C k^2, H W] -> [B, heads, C/heads, k^2, H W]: each position's k x k neighbourhood
        windows = rearrange(
            F.unfold(image, k, padding=k // 2), "b (h c t) n -> b h c t n", h=self.num_heads, t=k * k
        )
        out = torch.einsum("bhtn,bhctn->bhcn", weights, windows)
        out = rearrange(out, "b h c (y x) -> b (h c) y x", y=H, x=W)
        return self.proj_out(self.merge(self.grid_mean(out, prefix.shape[1]), out))


POOLS = ("max", "avg")


@TOKEN_MIXERS.register(
    "pfpool",
    paper="Learning Features with Parameter-Free Layers",
    arxiv="2202.02777",
    test_kwargs={"dim": 16, "pool": "max", "kernel_size": 3, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T D k^2)", "memory": "O(T D)", "state_kind": "fixed"},
)
class ParameterFreePooling(ImageMixer):
    """Parameter-free spatial mixing, "Learning Features with Parameter-Free Layers" (arXiv:2202.02777).

    The paper's efficient block keeps its pointwise layers and replaces the depthwise convolution,
    the only spatial operation, by a built-in parameter-free one (max pooling, stride 1):
    ``y = W_o pool_k(GELU(W_i x))``. All parameters are per-token projections; the spatial
    mixing itself has none. ``pool="avg"`` averages over the cells inside the image instead.
    """

    def __init__(
        self,
        dim: int,
        pool: str = "max",
        kernel_size: int = 3,
        expand: int = 1,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        check_choice("pfpool", "pool", pool, POOLS)
        _check_kernel("pfpool", kernel_size)
        check_positive_int("pfpool", "expand", expand)
        self.pool, self.kernel_size = pool, kernel_size
        self.proj_in = nn.Linear(dim, expand * dim)
        self.proj_out = nn.Linear(expand * dim, dim)

    def spatial(self, image: Tensor) -> Tensor:
        """The parameter-free operation on ``[B, C, H, W]`` (stride 1, same size)."""
        k = self.kernel_size
        if self.pool == "max":
            return F.max_pool2d(image, k, stride=1, padding=k // 2)
        return F.avg_pool2d(image, k, stride=1, padding=k // 2, count_include_pad=False)

    def mix(self, x: Tensor) -> Tensor:
        prefix, image = self.split(F.gelu(self.proj_in(x)))
        image = self.spatial(image)
        return self.proj_out(self.merge(self.grid_mean(image, prefix.shape[1]), image))
