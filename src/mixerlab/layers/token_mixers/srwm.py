"""Self-referential weight matrix token mixer (``srwm``).

Shapes: ``x: [B, T, D]`` split into heads ``[B, T, H, K]``; per-head weights ``[H, R, K]`` with
``R = 3K + 4`` rows ``[y; q; k; beta]``; state ``{"shift": [B, H, R, K]}``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.srwm import srwm_recurrent, srwm_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "srwm",
    paper="A Modern Self-Referential Weight Matrix That Learns to Modify Itself",
    arxiv="2202.05780",
    test_kwargs={"dim": 16, "num_heads": 2},
    meta={
        "state": "H (3K + 4) K",
        "time": "O(T H K^2), sequential over T",
        "memory": "O(T H K + sqrt(T) H K^2) in training (weights kept every ceil(sqrt(T)) steps)",
        "state_kind": "fixed",
    },
)
class SelfReferentialWeightMatrix(TokenMixer):
    """A Modern Self-Referential Weight Matrix That Learns to Modify Itself (arXiv:2202.05780).

    Per head, a weight matrix ``W_t = [W_y; W_q; W_k; W_beta] in R^{(3K+4) x K}`` maps the input
    to its output *and* to the query, key and four learning rates with which it rewrites itself::

        y_t, q_t, k_t, beta_t = W_{t-1} phi(x_t)                     (phi = softmax over K)
        W_t = W_{t-1} + sigmoid(beta_t) (W_{t-1} phi(q_t) - W_{t-1} phi(k_t)) phi(k_t)^T
        out_t = W_o [y_t^1; ...; y_t^H]

    ``x_t`` is split into heads directly (no input projection), as in the authors' layer. ``W_0``
    is the learned slow weight (init ``N(0, 1/K)``, ``W_beta`` with mean ``beta_init=-1``, the
    authors' default). As in the authors' code, the state is the *shift* ``W_t - W_0``, so an
    empty state is zeros and gradients keep reaching ``W_0`` after a state is passed.

    No parallel form: the update is nonlinear in ``W`` (queries, keys and learning rates come
    from ``W`` and pass through softmax and sigmoid), so the fast mode ``"recurrent"`` is a step
    loop over tokens, vectorised over batch and heads, with preallocated buffers and a
    hand-written backward (:func:`mixerlab.ops.srwm.srwm_recurrent`); the paper trains it
    sequentially too.
    """

    modes = ("recurrent", "reference")
    # the fused step loop writes into slices of preallocated buffers with out=, which Dynamo
    # cannot trace; compiled, the loop runs eagerly between graphs
    compile_fullgraph = False

    def __init__(
        self, dim: int, num_heads: int = 4, head_dim: int | None = None, beta_init: float = -1.0
    ) -> None:
        super().__init__()
        self.head_dim = resolve_heads("srwm", dim, num_heads, head_dim)
        self.dim, self.num_heads = dim, num_heads
        H, K = num_heads, self.head_dim
        self.rows = 3 * K + 4
        self.beta_init = beta_init
        self.weight = nn.Parameter(torch.empty(H, self.rows, K))  # W_0, the slow weights
        self.reset_parameters()  # drawn before o_proj, as always: seeded weights unchanged
        self.o_proj = nn.Linear(H * K, dim, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``W_0`` entries ``N(0, 1/K)``; the rows producing ``beta`` shifted by ``beta_init``."""
        K = self.head_dim
        weight = torch.randn(self.weight.shape, device=self.weight.device) * K**-0.5
        weight[:, 3 * K :] += self.beta_init
        self.weight.copy_(weight)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        B = x.shape[0]
        xh = rearrange(x, "b t (h k) -> b t h k", h=self.num_heads)
        W0 = self.weight.expand(B, *self.weight.shape)  # [B, H, R, K]
        W = W0 if state is None else W0 + state["shift"]
        op = srwm_reference if self.mode == "reference" else srwm_recurrent
        y, W = op(xh, W)
        return self.o_proj(rearrange(y, "b t h k -> b t (h k)")), {"shift": W - W0}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        return {"shift": torch.zeros(batch_size, self.num_heads, self.rows, self.head_dim, **f)}

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * self.rows * self.head_dim
