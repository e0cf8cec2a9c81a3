"""Test-time training token mixers: ``ttt_linear`` and ``ttt_mlp``.

Shapes: ``x: [B, T, D]``; ``H = num_heads`` heads of ``K = head_dim = D / H``: ``q, k, v:
[B, T, H, K]``; per-token inner learning rates ``[B, T, H]``; the state holds the inner model's
weights (TTT-Linear ``w: [B, H, K, K]``; TTT-MLP ``w1: [B, H, M, K]``, ``w2: [B, H, K, M]`` with
``M = expand K``), the same weights at the start of the current mini-batch (``*_base``) and
``pos: [B]``, the number of tokens already in that mini-batch.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.ttt import ttt_linear_chunk, ttt_linear_reference, ttt_mlp_chunk, ttt_mlp_reference
from mixerlab.registry import TOKEN_MIXERS

_PAPER = "Learning to (Learn at Test Time): RNNs with Expressive Hidden States"


class _TTT(TokenMixer):
    """Shared body: projections ``theta_Q, theta_K, theta_V``, a per-token learning rate
    ``eta_t = base_lr sigmoid(w_lr x_t + b_lr) / K`` per head (sec. 3.3 of the paper), the inner
    loop of :mod:`mixerlab.ops.ttt`, and an output projection."""

    modes = ("dual", "reference")
    weight_names: tuple[str, ...]

    def __init__(
        self, name: str, dim: int, num_heads: int, mini_batch_size: int, base_lr: float, device, dtype
    ) -> None:
        super().__init__()
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "mini_batch_size", mini_batch_size)
        check(base_lr > 0, name, "base_lr", base_lr, "expected > 0")
        self.dim, self.num_heads = dim, num_heads
        self.mini_batch_size, self.base_lr = mini_batch_size, float(base_lr)
        f = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(dim, 3 * dim, bias=False, **f)
        self.lr_proj = nn.Linear(dim, num_heads, **f)
        self.out_proj = nn.Linear(dim, dim, bias=False, **f)
        self.ln_weight = nn.Parameter(torch.empty(num_heads, self.head_dim, **f))
        self.ln_bias = nn.Parameter(torch.empty(num_heads, self.head_dim, **f))

    def _weight_shapes(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Inner weights normal with std 0.02 (the authors' init), the inner LayerNorm the identity."""
        for name in self.weight_names:
            nn.init.normal_(getattr(self, name), std=0.02)
        nn.init.ones_(self.ln_weight)
        nn.init.zeros_(self.ln_bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        Bsz, H = x.shape[0], self.num_heads
        q, k, v = rearrange(self.qkv(x), "b t (n h k) -> n b t h k", n=3, h=H)
        lr = self.base_lr * torch.sigmoid(self.lr_proj(x)) / self.head_dim  # [B, T, H]
        if state is None:
            weights = tuple(getattr(self, n).expand(Bsz, *getattr(self, n).shape) for n in self.weight_names)
            inner = (*weights, *weights, 0)
        else:
            pos = round(float(state["pos"][0]))
            inner = (
                *(state[n] for n in self.weight_names),
                *(state[f"{n}_base"] for n in self.weight_names),
                pos,
            )
        reference, dual = self._ops()
        op = reference if self.mode == "reference" else dual
        z, inner = op(q, k, v, lr, self.ln_weight, self.ln_bias, inner, mini_batch_size=self.mini_batch_size)
        n = len(self.weight_names)
        new_state = {name: inner[i] for i, name in enumerate(self.weight_names)}
        new_state.update({f"{name}_base": inner[n + i] for i, name in enumerate(self.weight_names)})
        new_state["pos"] = x.new_full((Bsz,), float(inner[-1]))
        return self.out_proj(rearrange(z, "b t h k -> b t (h k)")), new_state

    def _ops(self):
        raise NotImplementedError

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        state = {}
        for name in self.weight_names:
            w = getattr(self, name).detach().to(**f)
            state[name] = w.expand(batch_size, *w.shape).clone()
            state[f"{name}_base"] = state[name].clone()
        state["pos"] = torch.zeros(batch_size, **f)
        return state

    def state_size(self, seq_len: int) -> int:
        return 2 * sum(getattr(self, n).numel() for n in self.weight_names) + 1


@TOKEN_MIXERS.register(
    "ttt_linear",
    paper=_PAPER,
    arxiv="2407.04620",
    test_kwargs={"dim": 16, "num_heads": 2, "mini_batch_size": 5},
    meta={
        "state": "2 H K^2 + 1 (weights, mini-batch base, position)",
        "time": "O(T b D + T D K) dual form (b = mini_batch_size)",
        "memory": "O(T D + T b H)",
        "state_kind": "fixed",
    },
)
class TTTLinear(_TTT):
    """TTT-Linear, "Learning to (Learn at Test Time)" (arXiv:2407.04620).

    The hidden state is a linear model ``W`` per head, trained while reading the sequence by
    one gradient step per token on ``1/2 ||LN(W k_t) + k_t - v_t||^2``, with the mini-batch TTT
    of the paper: the ``b = mini_batch_size`` tokens of a mini-batch all take their gradient at
    the weights the previous mini-batch ended with. The output is ``z_t = q_t + LN(W_t q_t)``,
    then ``W_o``. ``b`` is part of the layer's definition (``b = 1`` is online gradient descent);
    the paper uses ``b = 16``.

    Modes: ``"dual"`` (the paper's dual form, one masked ``[b, b]`` product per mini-batch) and
    ``"reference"`` (per-token gradient steps through ``torch.autograd``). The inner weights ``W_0``
    are learned (the outer loop). Not included: the paper's Mamba-style backbone around the layer
    (short convolution, output gate, post-norm), which belongs to the block.
    """

    weight_names = ("w",)

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        mini_batch_size: int = 16,
        base_lr: float = 1.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__("ttt_linear", dim, num_heads, mini_batch_size, base_lr, device, dtype)
        K = self.head_dim
        self.w = nn.Parameter(torch.empty(num_heads, K, K, device=device, dtype=dtype))
        self.reset_parameters()

    def _ops(self):
        return ttt_linear_reference, ttt_linear_chunk


@TOKEN_MIXERS.register(
    "ttt_mlp",
    paper=_PAPER,
    arxiv="2407.04620",
    test_kwargs={"dim": 16, "num_heads": 2, "expand": 2, "mini_batch_size": 5},
    meta={
        "state": "4 H K M + 1 (weights, mini-batch base, position), M = expand K",
        "time": "O(T b D + T D M) dual form (b = mini_batch_size)",
        "memory": "O(T H M + T b H)",
        "state_kind": "fixed",
    },
)
class TTTMLP(_TTT):
    """TTT-MLP, "Learning to (Learn at Test Time)" (arXiv:2407.04620).

    As :class:`TTTLinear` with a two-layer MLP ``f(k) = W2 gelu(W1 k)`` (hidden width
    ``M = expand * head_dim``, 4 in the paper) as the inner model. Mode ``"dual"`` computes the
    mini-batch's gradients at its base weights in one batched pass and applies the dual form to
    each layer in turn; ``"reference"`` steps token by token through ``torch.autograd``.
    """

    weight_names = ("w1", "w2")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        expand: int = 4,
        mini_batch_size: int = 16,
        base_lr: float = 1.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__("ttt_mlp", dim, num_heads, mini_batch_size, base_lr, device, dtype)
        check_positive_int("ttt_mlp", "expand", expand)
        K, M = self.head_dim, expand * self.head_dim
        self.w1 = nn.Parameter(torch.empty(num_heads, M, K, device=device, dtype=dtype))
        self.w2 = nn.Parameter(torch.empty(num_heads, K, M, device=device, dtype=dtype))
        self.reset_parameters()

    def _ops(self):
        return ttt_mlp_reference, ttt_mlp_chunk
