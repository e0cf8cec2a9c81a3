"""ParaGRU token mixer (``pararnn``), "ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for
Large Language Models" (arXiv:2510.21450).

Shapes: ``x: [B, T, D]`` split into ``H`` heads ``[B, T, H, D/H]``; gate pre-activations
``[B, T, 3, N]`` (update, reset, candidate) over ``N = hidden_dim`` state channels; state
``{"h": [B, N]}``. The maths lives in :mod:`mixerlab.ops.pararnn`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.pararnn import paragru_recurrent, pararnn_newton, pararnn_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "pararnn",
    paper="ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for Large Language Models (ParaGRU)",
    arxiv="2510.21450",
    test_kwargs={"dim": 16, "num_heads": 2},
    meta={
        "state": "N (hidden_dim)",
        "time": "O(T D N / H) + O(I T log T N) for I Newton iterations",
        "memory": "O(T N)",
        "state_kind": "fixed",
    },
)
class ParaGRU(TokenMixer):
    """ParaGRU, "ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for LLMs" arXiv:2510.21450.

    A GRU with diagonal recurrent weights ``A_z, A_r, A_c`` (so each step's Jacobian is diagonal)
    and head-wise block-diagonal input weights, as in the authors' ``GRUDiagMH`` cell::

        z_t = sigmoid(B_z x_t + A_z * h_{t-1} + b_z)     r_t = sigmoid(B_r x_t + A_r * h_{t-1} + b_r)
        c_t = tanh(B_c x_t + A_c * (r_t * h_{t-1}) + b_c)
        h_t = (1 - z_t) * h_{t-1} + z_t * c_t            y_t = W_out h_t

    Modes: ``"newton"`` (default) solves ``h_t - f(h_{t-1}, x_t) = 0`` for the whole sequence by
    Newton's method, each step a parallel linear scan, until the largest update is below ``tol``
    (default ``sqrt(eps)`` of the dtype) or ``max_iters`` steps (default ``T``, which is exact);
    gradients by the implicit function theorem (an adjoint scan). ``"reference"`` evaluates the
    cell step by step. ``last_newton_iters`` records the iterations of the latest call (an
    ``int``; a 0-d tensor under torch.compile, where the iterations are one ``while_loop``).
    Initialisation (ours): update-gate bias ``-linspace(0, 3)`` so many channels start with long
    memory, recurrent diagonals uniform in ``[-0.5, 0.5]``.
    """

    modes = ("newton", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        hidden_dim: int | None = None,
        tol: float | None = None,
        max_iters: int | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "pararnn"
        head_in = resolve_heads(name, dim, num_heads, None)
        hidden_dim = dim if hidden_dim is None else hidden_dim
        check_positive_int(name, "hidden_dim", hidden_dim)
        check_divisible(name, "hidden_dim", hidden_dim, "num_heads", num_heads)
        check(tol is None or tol > 0, name, "tol", tol, "expected > 0 or None (sqrt of the dtype's eps)")
        if max_iters is not None:
            check_positive_int(name, "max_iters", max_iters)
        self.dim, self.num_heads, self.hidden_dim = dim, num_heads, hidden_dim
        self.tol, self.max_iters = tol, max_iters
        head_state = hidden_dim // num_heads
        self.in_weight = nn.Parameter(torch.empty(num_heads, head_in, 3, head_state))
        self.gate_bias = nn.Parameter(torch.empty(3, hidden_dim))
        self.recurrent = nn.Parameter(torch.empty(3, hidden_dim))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.last_newton_iters = 0

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Input weights ``N(0, 1 / fan_in)``; update-gate biases spread over [-3, 0] (a range of
        time scales); other biases zero; diagonal recurrent weights uniform in [-0.5, 0.5]."""
        dev, head_in = self.in_weight.device, self.in_weight.shape[1]
        self.in_weight.copy_(torch.randn(self.in_weight.shape, device=dev) * head_in**-0.5)
        nn.init.zeros_(self.gate_bias)
        self.gate_bias[0] = -torch.linspace(0.0, 3.0, self.hidden_dim, device=dev)
        self.recurrent.uniform_(-0.5, 0.5)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        heads = rearrange(x, "b t (h i) -> b t h i", h=self.num_heads)
        pre = torch.einsum("bthi,higj->btghj", heads, self.in_weight)
        pre = rearrange(pre, "b t g h j -> b t g (h j)") + self.gate_bias  # [B, T, 3, N]
        h0 = None if state is None else state["h"]
        if x.shape[1] == 0:
            return self.out_proj(pre.new_zeros(*x.shape[:2], self.hidden_dim)), state or self.init_state(
                x.shape[0], dtype=x.dtype
            )
        if self.mode == "reference":
            h = pararnn_reference(pre, self.recurrent, h0)
        elif x.shape[1] == 1:
            h0 = pre.new_zeros(x.shape[0], self.hidden_dim) if h0 is None else h0
            h = paragru_recurrent(h0, pre[:, 0], self.recurrent)[:, None]
        else:
            h, self.last_newton_iters = pararnn_newton(
                pre, self.recurrent, h0, tol=self.tol, max_iters=self.max_iters
            )
        return self.out_proj(h), {"h": h[:, -1]}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"h": torch.zeros(batch_size, self.hidden_dim, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return self.hidden_dim
