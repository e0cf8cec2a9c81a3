"""MLP image mixers: weights over the token axis, sized by the patch grid.

- ``token_mlp``: MLP-Mixer's token-mixing MLP (arXiv:2105.01601), the static no-attention baseline;
- ``ninformer``: NiNformer (arXiv:2403.02411): a token-mixing MLP generates an element-wise gate
  on a projection of the tokens (dynamic where MLP-Mixer is static);
- ``activator``: Activator (arXiv:2405.15953): a GLU structure in place of attention.

Their weights are ``[hidden, T]`` over the ``T = P + H W`` tokens of the model's grid (prefix
tokens included, each at its own row of the weights), so they need the grid (``needs_grid``) and
run at that one length.

Shapes: ``x: [B, T, D]``; over tokens ``[B, D, T]``.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.vision_base import GridSpec, ImageMixer
from mixerlab.registry import TOKEN_MIXERS

_GRID_TEST = {"grid": (4, 8), "num_prefix_tokens": 1}  # 33 tokens: the contract suite's odd length


class TokenLinear(nn.Linear):
    """A linear map over the token axis: ``[B, T_in, D] -> [B, T_out, D]`` (the same for every channel)."""

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(super().forward(rearrange(x, "b t d -> b d t")), "b d t -> b t d")


class _TokenMLPBase(ImageMixer):
    needs_grid = True

    def __init__(self, dim: int, expand: int, grid: GridSpec, num_prefix_tokens: int, causal: bool) -> None:
        super().__init__(dim, grid, num_prefix_tokens, causal)
        check_positive_int(type(self).__name__, "expand", expand)
        self.hidden_tokens = expand * self.num_tokens


@TOKEN_MIXERS.register(
    "token_mlp",
    paper="MLP-Mixer: An all-MLP Architecture for Vision (token-mixing MLP)",
    arxiv="2105.01601",
    test_kwargs={"dim": 16, "expand": 1, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T^2 D)", "memory": "O(T D)", "state_kind": "fixed"},
)
class TokenMixingMLP(_TokenMLPBase):
    """MLP-Mixer's token-mixing MLP (arXiv:2105.01601): ``Y = W_2 GELU(W_1 X)`` over the token axis.

    The same two-layer MLP mixes every channel's column of ``T`` token values: static weights,
    no attention, nothing that depends on the content. The channel MLP is the block's.
    """

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, expand, grid, num_prefix_tokens, causal)
        self.fc1 = TokenLinear(self.num_tokens, self.hidden_tokens)
        self.fc2 = TokenLinear(self.hidden_tokens, self.num_tokens)

    def mix(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


@TOKEN_MIXERS.register(
    "ninformer",
    paper="NiNformer: A Network in Network Transformer with Token Mixing Generated Gating Function",
    arxiv="2403.02411",
    test_kwargs={"dim": 16, "expand": 1, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T^2 D)", "memory": "O(T D)", "state_kind": "fixed"},
)
class NiNformer(_TokenMLPBase):
    """NiNformer (arXiv:2403.02411): a token-mixing MLP generates an element-wise gate.

    ``Y = W_o [(X W_v) * sigmoid(W_g TokenMLP(X))]``: the inner network is MLP-Mixer's token MLP
    followed by a channel map; its output, squashed to ``(0, 1)``, gates a projection of the
    tokens element by element. Where MLP-Mixer's token weights are the same for every image, the
    gate makes the mixing depend on the content (a network in the network).
    """

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, expand, grid, num_prefix_tokens, causal)
        self.value = nn.Linear(dim, dim)
        self.fc1 = TokenLinear(self.num_tokens, self.hidden_tokens)
        self.fc2 = TokenLinear(self.hidden_tokens, self.num_tokens)
        self.gate = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)

    def gate_of(self, x: Tensor) -> Tensor:
        """The generated gate in ``(0, 1)``, ``[B, T, D]``."""
        return self.gate(self.fc2(F.gelu(self.fc1(x)))).sigmoid()

    def mix(self, x: Tensor) -> Tensor:
        return self.proj_out(self.value(x) * self.gate_of(x))


@TOKEN_MIXERS.register(
    "activator",
    paper="Activator: GLU Activation Function as the Core Component of a Vision Transformer",
    arxiv="2405.15953",
    test_kwargs={"dim": 16, "expand": 1, **_GRID_TEST},
    meta={"state": "0 (non-causal)", "time": "O(T^2 D)", "memory": "O(T D)", "state_kind": "fixed"},
)
class Activator(_TokenMLPBase):
    """Activator (arXiv:2405.15953): a GLU MLP in place of attention, ``W_o[(W_a X) * GELU(W_b X)]``.

    The paper replaces the attention sub-block by an MLP built around a gated linear unit. Its
    abstract does not say along which axis; we mix along the token axis (the role attention held),
    so ``W_a, W_b: [hidden, T]`` and ``W_o: [T, hidden]`` act on every channel's column of token
    values, and the gate makes the mixing multiplicative (second order) where a token MLP is not.
    """

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        grid: GridSpec = None,
        num_prefix_tokens: int = 0,
        causal: bool = False,
    ) -> None:
        super().__init__(dim, expand, grid, num_prefix_tokens, causal)
        self.value = TokenLinear(self.num_tokens, self.hidden_tokens)
        self.gate = TokenLinear(self.num_tokens, self.hidden_tokens)
        self.proj_out = TokenLinear(self.hidden_tokens, self.num_tokens)

    def mix(self, x: Tensor) -> Tensor:
        return self.proj_out(self.value(x) * F.gelu(self.gate(x)))
