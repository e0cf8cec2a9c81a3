"""RWKV-6 ("Finch") time-mixing token mixer: ``rwkv6``.

Shapes: ``x: [B, T, D]``; receptance, keys and decays ``[B, T, H, K]``, values ``[B, T, H, K]``
(``K = D / H``); state ``{"S": [B, H, K, K], "x": [B, D]}`` (the matrix state and the last token,
which the next call's token shift reads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.layers.token_mixers.linear_attention import head_norm
from mixerlab.ops.backends.fla import check_backend, rwkv6_fla, use_fla
from mixerlab.ops.rwkv6 import rwkv6_chunk, rwkv6_reference
from mixerlab.registry import TOKEN_MIXERS

# The five data-dependent interpolations of Finch's token shift, in this order (the paper's ddlerp).
_SHIFTED = ("w", "k", "v", "r", "g")


@TOKEN_MIXERS.register(
    "rwkv6",
    paper="Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence",
    arxiv="2404.05892",
    test_kwargs={"dim": 16, "num_heads": 2, "shift_rank": 4, "decay_rank": 4, "chunk_size": 12},
    meta={
        "state": "H K^2 + D (K = D / H; matrix state and the shifted token)",
        "time": "O(T C K^2 + T K^2) per head",
        "memory": "O(T C + T K) per head",
        "state_kind": "fixed",
    },
)
class RWKV6(TokenMixer):
    """Finch time mixing, "Eagle and Finch: RWKV with Matrix-Valued States ..." (arXiv:2404.05892).

    Section 4.2 of the paper, with ``x_{-1}`` the previous token (the state's ``x``)::

        lora_s(z)      = lambda_s + tanh(z A_s) B_s
        ddlerp_s(a, b) = a + (b - a) * lora_s(a + (b - a) * mu_x)        (s in w, k, v, r, g)
        r_t, k_t, v_t, g_t = ddlerp_s(x_t, x_{t-1}) W_s
        d_t = lora_d(ddlerp_w(x_t, x_{t-1})),   w_t = exp(-exp(d_t))      (per channel, in (0, 1))
        o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),   S_t = diag(w_t) S_{t-1} + k_t^T v_t
        out = (SiLU(g_t) * GroupNorm_heads(o_t)) W_o

    The five token-shift LoRAs share one down projection (``shift_rank``, 32 in the paper) and
    the decay has its own (``decay_rank``, 64). Initialisation is modelled on the paper's code for
    a layer half-way up a stack (a single mixer does not know its depth): interpolation weights
    ``1 - ramp^p`` over channels, decay bases ``-6 + 5 ramp^(0.7 + 1.3 * 0.5)``, a zero decay
    LoRA up-projection, a bonus decreasing over channels with a small zigzag.

    Modes: ``"chunk"`` (:func:`~mixerlab.ops.rwkv6.rwkv6_chunk`: GLA's chunked op with the
    queries shifted by one step, plus the bonus) and ``"reference"`` (per-step loop).
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): the chunk mode runs on fla's ``chunk_rwkv6``
    for CUDA inputs when installed (see :mod:`mixerlab.ops.backends`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        shift_rank: int = 32,
        decay_rank: int = 64,
        chunk_size: int = 64,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "rwkv6"
        check_backend(name, backend)
        self.backend = backend
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "shift_rank", shift_rank)
        check_positive_int(name, "decay_rank", decay_rank)
        check_positive_int(name, "chunk_size", chunk_size)
        self.dim, self.num_heads, self.chunk_size = dim, num_heads, chunk_size
        n = len(_SHIFTED)
        self.shift_down = nn.Linear(dim, n * shift_rank, bias=False)
        self.decay_down = nn.Linear(dim, decay_rank, bias=False)
        self.rkvg_proj = nn.Linear(dim, 4 * dim, bias=bias)
        self.o_proj = nn.Linear(dim, dim, bias=bias)
        self.mu_x = nn.Parameter(torch.empty(dim))
        self.shift_base = nn.Parameter(torch.empty(n, dim))  # lambda_s
        self.shift_up = nn.Parameter(torch.empty(n, shift_rank, dim))  # B_s
        self.decay_base = nn.Parameter(torch.empty(dim))  # lambda_d
        self.decay_up = nn.Parameter(torch.empty(decay_rank, dim))  # B_d
        self.bonus = nn.Parameter(torch.empty(num_heads, self.head_dim))  # u
        self.norm_weight = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.norm_bias = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialisation modelled on the paper's code for a middle layer (class docstring)."""
        dim = self.dim
        ramp = torch.arange(dim, dtype=torch.float32, device=self.mu_x.device) / max(dim - 1, 1)
        # 1 - ramp^(layer-dependent power): channels lean from the current token to the previous
        self.mu_x.copy_(1 - ramp**0.5)
        for i, power in enumerate((0.5, 0.5, 0.5 + 0.3, 0.25, 0.25)):
            self.shift_base[i].copy_(1 - ramp**power)
        nn.init.uniform_(self.shift_up, -0.01, 0.01)
        self.decay_base.copy_(-6 + 5 * ramp ** (0.7 + 1.3 * 0.5))
        nn.init.zeros_(self.decay_up)
        head = rearrange(ramp, "(h k) -> h k", h=self.num_heads)
        # the paper code's zigzag bonus: larger for early channels, +-0.1 alternation
        zigzag = (torch.arange(dim, device=ramp.device) + 1) % 3 - 1
        self.bonus.copy_(0.5 * (1 - head) + 0.1 * rearrange(zigzag, "(h k) -> h k", h=self.num_heads))
        nn.init.ones_(self.norm_weight)
        nn.init.zeros_(self.norm_bias)

    def shifted(self, x: Tensor, x_prev: Tensor) -> Tensor:
        """The five data-dependent interpolations ``ddlerp_s(x_t, x_{t-1})``: ``[5, B, T, D]``."""
        dx = x_prev - x
        z = torch.tanh(self.shift_down(x + dx * self.mu_x))
        z = rearrange(z, "b t (n r) -> n b t r", n=len(_SHIFTED))
        lora = self.shift_base[:, None, None, :] + torch.einsum("nbtr,nrd->nbtd", z, self.shift_up)
        return x + dx * lora

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        H = self.num_heads
        # x_{t-1}: the previous call's last token, then this call's tokens shifted by one
        x_prev = torch.cat([state["x"][:, None].to(x.dtype), x[:, :-1]], dim=1)
        xw, xk, xv, xr, xg = self.shifted(x, x_prev)
        W = rearrange(self.rkvg_proj.weight, "(four o) d -> four o d", four=4)
        b = [None] * 4 if self.rkvg_proj.bias is None else rearrange(self.rkvg_proj.bias, "(f o) -> f o", f=4)
        r, k, v, g = (F.linear(xs, W[i], b[i]) for i, xs in enumerate((xr, xk, xv, xg)))
        d = self.decay_base + torch.tanh(self.decay_down(xw)) @ self.decay_up
        log_w = -d.exp()  # log w_t = -exp(d_t) <= 0
        r, k, v, log_w = (rearrange(t, "b t (h k) -> b t h k", h=H) for t in (r, k, v, log_w))
        if self.mode == "reference":
            o, S = rwkv6_reference(r, k, v, log_w, self.bonus, initial_state=state["S"])
        elif x.shape[1] > 1 and use_fla("rwkv6", self.backend, x):
            o, S = rwkv6_fla(r, k, v, log_w, self.bonus, initial_state=state["S"])
        else:
            sizes = {"chunk_size": self.chunk_size, "subchunk_size": math.gcd(self.chunk_size, 16)}
            o, S = rwkv6_chunk(r, k, v, log_w, self.bonus, initial_state=state["S"], **sizes)
        o = rearrange(head_norm(o, self.norm_weight, self.norm_bias, eps=1e-5), "b t h v -> b t (h v)")
        y = self.o_proj(F.silu(g) * o)
        last = x[:, -1] if x.shape[1] else state["x"]
        return y, {"S": S, "x": last}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        factory = self._factory(device, dtype)
        K = self.head_dim
        return {
            "S": torch.zeros(batch_size, self.num_heads, K, K, **factory),
            "x": torch.zeros(batch_size, self.dim, **factory),
        }

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * self.head_dim**2 + self.dim
