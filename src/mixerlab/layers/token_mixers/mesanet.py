"""MesaNet token mixer: ``mesanet`` (the Mesa layer, a locally optimal test-time regression).

Shapes: ``x: [B, T, D]``; queries/keys ``[B, T, H, K]``; values ``[B, T, H, V]`` (``V = K``); gates
``[B, T, H]``; state ``{"kk": [B, H, K, K], "kv": [B, H, K, V], "conv": [B, W-1, 2 H K]}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.short_conv import ShortConv
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.mesa import mesa_chunk, mesa_recurrent, mesa_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "mesanet",
    paper="MesaNet: Sequence Modeling by Locally Optimal Test-Time Training",
    arxiv="2506.05233",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K (K + V) + (W-1) 2 H K (conv tail)",
        "time": "O(T C K^2 + T K^3) per head",
        "memory": "O(T K^2) per head",
        "state_kind": "fixed",
    },
)
class MesaNet(TokenMixer):
    """The Mesa layer, "MesaNet: Sequence Modeling by Locally Optimal Test-Time Training" (arXiv:2506.05233).

    Per head, at every step the output of the ridge regression fitted to all past key-value pairs,
    forgotten by a gate ``gamma`` and weighted by an input gate ``beta``::

        q_t, k_t = L2norm(SiLU(conv(x W_q)_t)), L2norm(SiLU(conv(x W_k)_t)),   v_t = x_t W_v
        gamma_t  = sigmoid(x_t w_a + b_a),   beta_t = sigmoid(x_t w_b + b_b)      (one per head)
        H^kk_t   = gamma_t H^kk_{t-1} + beta_t k_t^T k_t,   H^kv_t = gamma_t H^kv_{t-1} + beta_t k_t^T v_t
        o_t      = q_t (H^kk_t + Lambda)^-1 H^kv_t,        Lambda = diag(softplus(l) + lambda_min)
        out      = RMSNorm_heads(o) W_O        (optionally gated: RMSNorm(o) * SiLU(x W_g))

    ``Lambda`` is learned per head and key channel, starting at ``lambda_init`` (1) with the lower
    bound ``lambda_min`` (0.25), as in the authors' layer; ``conv_size=None`` drops the short
    convolution (and its SiLU). The paper solves the system by conjugate gradient; here it is solved
    exactly by Cholesky (see :mod:`mixerlab.ops.mesa.chunk` for why). The state is the two
    statistics plus the convolution's tail, a fixed ``H K (K + V)`` whatever the length.

    Modes: ``chunk`` (chunked ``H^kk``, one batched solve, the GLA chunk op for the read-out; one
    token: the recurrent step) and ``reference`` (the per-step loop with ``torch.linalg.solve``).
    There is no fla backend: fla's ``chunk_mesa_net`` is conjugate gradient with a fixed step
    count, about 1e-3 (relative) from the exact solve (see :mod:`mixerlab.ops.backends.fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        conv_size: int | None = 4,
        lambda_init: float = 1.0,
        lambda_min: float = 0.25,
        output_gate: bool = False,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        name = "mesanet"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check(
            conv_size is None or (isinstance(conv_size, int) and conv_size >= 2),
            name,
            "conv_size",
            conv_size,
            "expected an integer >= 2, or None to disable the short convolution",
        )
        check(lambda_min >= 0, name, "lambda_min", lambda_min, "expected >= 0")
        check(
            lambda_init > lambda_min, name, "lambda_init", lambda_init, f"expected > lambda_min={lambda_min}"
        )
        check(isinstance(output_gate, bool), name, "output_gate", output_gate, "expected True or False")
        check_positive_int(name, "chunk_size", chunk_size)
        check(norm_eps > 0, name, "norm_eps", norm_eps, "expected > 0")
        self.dim, self.num_heads, self.conv_size, self.chunk_size = dim, num_heads, conv_size, chunk_size
        self.lambda_init, self.lambda_min, self.norm_eps = lambda_init, lambda_min, norm_eps
        H, K = num_heads, self.head_dim
        self.value_dim = K
        self.qk_proj = nn.Linear(dim, 2 * H * K, bias=False)
        self.v_proj = nn.Linear(dim, H * K, bias=False)
        self.a_proj = nn.Linear(dim, H, bias=True)  # forget gate
        self.b_proj = nn.Linear(dim, H, bias=True)  # input gate
        if conv_size is not None:
            self.conv = ShortConv(2 * H * K, conv_size, bias=False, activation="silu", owner=name)
        self.g_proj = nn.Linear(dim, H * K, bias=False) if output_gate else None
        self.lambda_params = nn.Parameter(torch.empty(H, K))
        self.norm_weight = nn.Parameter(torch.empty(H, K))
        self.o_proj = nn.Linear(H * K, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``Lambda`` at ``lambda_init`` (inverse softplus), the output norm's gain at one."""
        self.lambda_params.fill_(math.log(math.expm1(self.lambda_init - self.lambda_min)))
        nn.init.ones_(self.norm_weight)

    def regulariser(self) -> Tensor:
        """``lam: [H, K]``, the diagonal of ``Lambda`` (always ``>= lambda_min``)."""
        return F.softplus(self.lambda_params) + self.lambda_min

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        H = self.num_heads
        new_state: State = {}
        qk = self.qk_proj(x)
        if self.conv_size is not None:
            qk, new_state["conv"] = self.conv(qk, state["conv"], reference=self.mode == "reference")
        q, k = rearrange(qk, "b t (two h k) -> two b t h k", two=2, h=H)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        v = rearrange(self.v_proj(x), "b t (h v) -> b t h v", h=H)
        log_decay = F.logsigmoid(self.a_proj(x))  # [B, T, H]
        beta = torch.sigmoid(self.b_proj(x))
        lam = self.regulariser().to(x.dtype)
        stats = (state["kk"], state["kv"])
        if self.mode == "reference":
            o, (h_kk, h_kv) = mesa_reference(q, k, v, log_decay, beta, lam, initial_state=stats)
        elif x.shape[1] == 1:
            o, (h_kk, h_kv) = mesa_recurrent(
                q[:, 0], k[:, 0], v[:, 0], log_decay[:, 0], beta[:, 0], lam, stats
            )
            o = o[:, None]
        else:
            o, (h_kk, h_kv) = mesa_chunk(
                q, k, v, log_decay, beta, lam, initial_state=stats, chunk_size=self.chunk_size
            )
        new_state["kk"], new_state["kv"] = h_kk, h_kv
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps) * self.norm_weight
        if self.g_proj is not None:
            o = o * F.silu(rearrange(self.g_proj(x), "b t (h v) -> b t h v", h=H))
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, K = self.num_heads, self.head_dim
        state = {
            "kk": torch.zeros(batch_size, H, K, K, **f),
            "kv": torch.zeros(batch_size, H, K, self.value_dim, **f),
        }
        if self.conv_size is not None:
            state["conv"] = self.conv.init_state(batch_size, **f)
        return state

    def state_size(self, seq_len: int) -> int:
        conv = 0 if self.conv_size is None else self.conv.state_size()
        return self.num_heads * self.head_dim * (self.head_dim + self.value_dim) + conv
