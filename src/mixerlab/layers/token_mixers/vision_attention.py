"""Attention over an image's patch grid with a spatial prior.

- ``gpsa``: ConViT's gated positional self-attention (arXiv:2103.10697): per head a learned gate
  between content attention and a positional attention initialised to mimic a convolution;
- ``manhattan``: RMT's Manhattan self-attention (arXiv:2309.11523): softmax scores scaled by
  ``gamma^{|dx| + |dy|}``, the 2-D form of RetNet's explicit decay (math in
  :mod:`mixerlab.ops.manhattan_retention`).

Both are :class:`~mixerlab.layers.token_mixers.vision_base.ImageMixer`: non-causal, stateless,
with the model's grid (``grid=None``: the tokens after the prefix are one row).

Shapes: ``x: [B, T, D]``; heads ``[B, T, H, K]``; scores ``[B, H, T, T]``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.token_mixers.base import resolve_heads
from mixerlab.layers.token_mixers.vision_base import GridSpec, ImageMixer
from mixerlab.ops.manhattan_retention import manhattan_retention_parallel, manhattan_retention_reference
from mixerlab.registry import TOKEN_MIXERS

_GRID_TEST = {"grid": (4, 8), "num_prefix_tokens": 1}  # 33 tokens: the contract suite's odd length


def relative_positions(rows: int, cols: int, device=None, dtype=None) -> Tensor:
    """ConViT's relative encoding ``r_nm = (dx, dy, dx^2 + dy^2)`` of a ``rows x cols`` grid, ``[N, N, 3]``"""
    y, x = torch.meshgrid(
        torch.arange(rows, device=device, dtype=dtype),
        torch.arange(cols, device=device, dtype=dtype),
        indexing="ij",
    )
    y, x = y.flatten(), x.flatten()
    dx, dy = x[None, :] - x[:, None], y[None, :] - y[:, None]  # key minus query
    return torch.stack([dx, dy, dx**2 + dy**2], dim=-1)


@TOKEN_MIXERS.register(
    "gpsa",
    paper="ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases",
    arxiv="2103.10697",
    test_kwargs={"dim": 16, "num_heads": 4, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T^2 D)", "memory": "O(H T^2)", "state_kind": "fixed"},
)
class GatedPositionalSelfAttention(ImageMixer):
    """ConViT's gated positional self-attention, GPSA (arXiv:2103.10697).

    Per head ``h``: ``A_h = (1 - sigmoid(lambda_h)) softmax(Q_h K_h^T / sqrt(K)) + sigmoid(lambda_h)
    softmax(v_h . r)`` with ``r_nm = (dx, dy, dx^2 + dy^2)`` the relative position of key ``m``
    to query ``n``. ConViT's local initialisation sets ``v_h = alpha (2 Delta_h, -1)`` for an offset
    ``Delta_h`` on a ``sqrt(H) x sqrt(H)`` kernel, so the positional score is ``-alpha |r - Delta_h|^2``
    up to a constant: head ``h`` starts as a convolution tap at ``Delta_h`` (heads beyond the square
    start uniform), and ``lambda_h = 1`` starts mostly positional; each head may escape locality
    by learning its gate. Prefix tokens have no position: their queries use content attention
    alone, and their keys get no positional weight.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        locality_strength: float = 1.0,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        self.head_dim = resolve_heads("gpsa", dim, num_heads, None)
        check(locality_strength > 0, "gpsa", "locality_strength", locality_strength, "expected > 0")
        self.num_heads, self.locality_strength = num_heads, locality_strength
        self.qk = nn.Linear(dim, 2 * dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        # No bias: a per-head constant cancels in the softmax over keys (it would get no gradient).
        self.pos_proj = nn.Linear(3, num_heads, bias=False)
        self.gating = nn.Parameter(torch.empty(num_heads))
        self.proj_out = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # ConViT's local init (no random draw): head (i, j) of a k x k kernel attends to offset
        # (j - c, i - c) from its query, c the kernel's centre.
        kernel = math.isqrt(self.num_heads)
        centre = (kernel - 1) / 2
        weight = torch.zeros(self.num_heads, 3)
        for i in range(kernel):
            for j in range(kernel):
                head = i + kernel * j
                weight[head] = torch.tensor([2 * (j - centre), 2 * (i - centre), -1.0])
        self.pos_proj.weight.copy_(weight * self.locality_strength)
        nn.init.ones_(self.gating)

    def positional_attention(self, rows: int, cols: int, dtype: torch.dtype) -> Tensor:
        """``softmax(v_h . r)`` over the grid's keys, ``[H, N, N]`` for ``N = rows cols`` cells."""
        rel = relative_positions(rows, cols, device=self.gating.device, dtype=dtype)
        return rearrange(self.pos_proj(rel), "n m h -> h n m").softmax(dim=-1)

    def mix(self, x: Tensor) -> Tensor:
        rows, cols = self._grid_of(x)
        P = self.num_prefix_tokens
        q, k = rearrange(self.qk(x), "b t (two h k) -> two b t h k", two=2, h=self.num_heads)
        v = rearrange(self.value(x), "b t (h k) -> b t h k", h=self.num_heads)
        content = (torch.einsum("bnhk,bmhk->bhnm", q, k) * self.head_dim**-0.5).softmax(dim=-1)
        gate = self.gating.sigmoid()[:, None, None]  # [H, 1, 1]
        positional = nn.functional.pad(self.positional_attention(rows, cols, x.dtype), (P, 0))
        attn = torch.cat([content[:, :, :P], (1 - gate) * content[:, :, P:] + gate * positional], dim=2)
        y = torch.einsum("bhnm,bmhk->bnhk", attn, v)
        return self.proj_out(rearrange(y, "b t h k -> b t (h k)"))


def rmt_decays(num_heads: int, initial: float = 2.0, heads_range: float = 4.0) -> Tensor:
    """RMT's per-head decays ``gamma_h = 1 - 2^{-initial - heads_range h / H}`` (its code's defaults)."""
    h = torch.arange(num_heads, dtype=torch.float64)
    return 1 - 2 ** (-initial - heads_range * h / num_heads)


@TOKEN_MIXERS.register(
    "manhattan",
    paper="RMT: Retentive Networks Meet Vision Transformers (Manhattan self-attention)",
    arxiv="2309.11523",
    test_kwargs={"dim": 16, "num_heads": 4, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T^2 D)", "memory": "O(H T^2)", "state_kind": "fixed"},
)
class ManhattanSelfAttention(ImageMixer):
    """RMT's Manhattan self-attention, MaSA (arXiv:2309.11523): a 2-D explicit decay on attention.

    ``o = (softmax(Q K^T / sqrt(K)) * D) V`` with ``D_nm = gamma_h^{|x_n - x_m| + |y_n - y_m|}``
    per head (RMT's decays, from ``3/4`` to near 1, so some heads stay local and some see far).
    Modes: ``"parallel"`` (the decay as a Kronecker product of 1-D decays) and ``"reference"``
    (per query and key, distances from the cells' coordinates). The paper's axis-decomposed form
    for high resolutions, its local context enhancement and 2-D rotary positions are not included.
    """

    modes = ("parallel", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        resolve_heads("manhattan", dim, num_heads, None)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj_out = nn.Linear(dim, dim)

    def mix(self, x: Tensor) -> Tensor:
        grid = self._grid_of(x)
        q, k, v = rearrange(self.qkv(x), "b t (three h k) -> three b t h k", three=3, h=self.num_heads)
        gammas = rmt_decays(self.num_heads).to(device=x.device, dtype=x.dtype)
        op = manhattan_retention_parallel if self.mode == "parallel" else manhattan_retention_reference
        y = op(q, k, v, gammas, grid, self.num_prefix_tokens)
        return self.proj_out(rearrange(y, "b t h k -> b t (h k)"))
