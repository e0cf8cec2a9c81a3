"""RWKV-7 "Goose" time mixing (``rwkv7``): the generalised delta rule (arXiv:2503.14456).

Shapes: ``x: [B, T, D]``; receptance/keys/decay ``[B, T, H, K]`` with ``H K = D``; values
``[B, T, H, K]``; recurrent state ``[B, H, K, K]``; token-shift state ``[B, D]`` (the last input).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.backends.fla import check_backend, dplr_fla, use_fla
from mixerlab.ops.rwkv7 import rwkv7_chunk, rwkv7_recurrent, rwkv7_reference
from mixerlab.registry import TOKEN_MIXERS

_LOG_DECAY_FLOOR = math.exp(-0.5)  # w = exp(-e^{-0.5} sigmoid(.)): decay in [0.545, 1] (the paper's)


@TOKEN_MIXERS.register(
    "rwkv7",
    paper='RWKV-7 "Goose" with Expressive Dynamic State Evolution',
    arxiv="2503.14456",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8, "low_rank_dim": 4},
    meta={
        "state": "H K^2 + D (token shift), K = D / H",
        "time": "O(T C D K / H + T D^2) chunked (C = chunk_size)",
        "memory": "O(T C D)",
        "state_kind": "fixed",
    },
)
class RWKV7(TokenMixer):
    """RWKV-7 "Goose" with Expressive Dynamic State Evolution (arXiv:2503.14456), time mixing.

    Per head, with the state ``S_t in R^{K x K}`` (values x keys) and row vectors::

        x^c_t    = x_t + mu_c (x_{t-1} - x_t)             token shift, c in {r, w, k, v, a, g}
        r, k, v  = W_r x^r, W_k x^k, W_v x^v
        w_t      = exp(-e^{-0.5} sigmoid(w_0 + tanh(x^w A_w) B_w))      per-channel decay
        a_t      = sigmoid(a_0 + x^a A_a B_a)                            in-context learning rate
        kappa_t  = L2norm(k_t * xi),   k_t <- k_t * (1 + (a_t - 1) alpha)
        S_t      = S_{t-1} (diag(w_t) - kappa_t^T (a_t * kappa_t)) + v_t^T k_t
        o_t      = GroupNorm(S_t r_t) + ((r_t * rho * k_t) . 1) v_t      bonus ("u" term)
        y_t      = W_o (o_t * (sigmoid(x^g A_g) B_g))

    ``xi, alpha, rho`` (``k_k, k_a, r_k``) are learned per channel, the ``A_*, B_*`` low-rank
    (``low_rank_dim``) maps. Left out: the value residual (``v`` mixed with the first layer's
    values), which needs a tensor passed between layers that the token-mixer contract does not
    carry. Initialisation follows the authors' for a middle layer (the mixer does not know its
    depth). The fast form is the chunked diagonal-plus-rank-one UT transform (``ops.rwkv7.chunk``),
    ``chunk_size=16`` by default because its per-channel pairwise decays cost ``C`` times the input.
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): the chunk mode runs on fla's ``chunk_rwkv7``
    for CUDA inputs when installed (see :mod:`mixerlab.ops.backends.fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        low_rank_dim: int = 32,
        chunk_size: int = 16,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "rwkv7"
        check_backend(name, backend)
        self.backend = backend
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "low_rank_dim", low_rank_dim)
        check_positive_int(name, "chunk_size", chunk_size)
        check(norm_eps > 0, name, "norm_eps", norm_eps, "expected > 0")
        self.dim, self.num_heads, self.low_rank_dim = dim, num_heads, low_rank_dim
        self.chunk_size, self.norm_eps = chunk_size, norm_eps
        H, K, R = num_heads, self.head_dim, low_rank_dim
        self.shift_mix = nn.Parameter(torch.empty(6, dim))  # mu_r, mu_w, mu_k, mu_v, mu_a, mu_g
        self.r_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.w_down = nn.Linear(dim, R, bias=False)
        self.w_up = nn.Linear(R, dim)  # its bias is w_0
        self.a_down = nn.Linear(dim, R, bias=False)
        self.a_up = nn.Linear(R, dim)  # its bias is a_0
        self.g_down = nn.Linear(dim, R, bias=False)
        self.g_up = nn.Linear(R, dim, bias=False)
        self.k_k = nn.Parameter(torch.empty(dim))
        self.k_a = nn.Parameter(torch.empty(dim))
        self.r_k = nn.Parameter(torch.empty(H, K))
        self.norm_weight = nn.Parameter(torch.empty(H, K))
        self.norm_bias = nn.Parameter(torch.empty(H, K))
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' init for a middle layer: shift ramps, decay and learning-rate biases per channel."""
        D, K = self.dim, self.head_dim
        dev = self.k_k.device
        n = torch.arange(D, device=dev, dtype=torch.float32)
        ramp = n / D
        linear = n / max(D - 1, 1) - 0.5
        centre = (K - 1) / 2 if K > 1 else 1.0
        zigzag = ((n % K) - (K - 1) / 2) / centre
        zigzag = zigzag * zigzag.abs()
        depth_ratio = 0.5  # a middle layer of the stack
        powers = torch.tensor([0.2, 0.9, 0.7, 0.7, 0.9, 0.2], device=dev)[:, None] * depth_ratio
        self.shift_mix.copy_(1.0 - ramp[None] ** powers)
        decay = -6 + 6 * (n / max(D - 1, 1)) ** (1 + depth_ratio**0.3)
        self.w_up.bias.copy_(decay + 0.5 + zigzag * 2.5)
        self.a_up.bias.copy_(-0.19 + zigzag * 0.3 + linear * 0.4)
        # the decay and learning-rate maps start at their biases; the gate needs a non-zero path
        nn.init.zeros_(self.w_down.weight)
        nn.init.zeros_(self.a_down.weight)
        nn.init.normal_(self.g_down.weight, std=0.1)
        for up in (self.w_up, self.a_up, self.g_up):
            nn.init.orthogonal_(up.weight, gain=0.1)
        self.k_k.copy_(0.71 - linear * 0.1)
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        nn.init.ones_(self.norm_weight)
        nn.init.zeros_(self.norm_bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        H = self.num_heads
        last = x.new_zeros(x.shape[0], 1, self.dim) if state is None else state["shift"][:, None]
        delta = torch.cat([last, x[:, :-1]], dim=1) - x
        xr, xw, xk, xv, xa, xg = (x + delta * mu for mu in self.shift_mix.unbind(0))
        r, k, v = self.r_proj(xr), self.k_proj(xk), self.v_proj(xv)
        log_w = -_LOG_DECAY_FLOOR * torch.sigmoid(self.w_up(torch.tanh(self.w_down(xw))))
        a = torch.sigmoid(self.a_up(self.a_down(xa)))
        gate = self.g_up(torch.sigmoid(self.g_down(xg)))
        kappa = F.normalize(rearrange(k * self.k_k, "b t (h k) -> b t h k", h=H), dim=-1)
        k = k * (1 + (a - 1) * self.k_a)
        r, log_w, k, v, a = (rearrange(t, "b t (h k) -> b t h k", h=H) for t in (r, log_w, k, v, a))

        S0 = None if state is None else state["recurrent"]
        if x.shape[1] == 1 and S0 is not None and self.mode != "reference":
            step = (t[:, 0] for t in (r, log_w, k, v, -kappa, kappa * a))
            o, S = rwkv7_recurrent(*step, S0)
            o = o[:, None]
        elif self.mode == "reference":
            o, S = rwkv7_reference(r, log_w, k, v, kappa, a, state=S0)
        elif use_fla("rwkv7", self.backend, x):
            o, S = dplr_fla(r, log_w, k, v, -kappa, kappa * a, state=S0, min_log_decay=-_LOG_DECAY_FLOOR)
        else:
            o, S = rwkv7_chunk(
                r,
                log_w,
                k,
                v,
                -kappa,
                kappa * a,
                state=S0,
                chunk_size=self.chunk_size,
                min_log_decay=-_LOG_DECAY_FLOOR,
            )
        # per-head GroupNorm (eps scaled by the head width, as the authors'), then the bonus term
        mean = o.mean(-1, keepdim=True)
        var = (o - mean).square().mean(-1, keepdim=True)
        o = (o - mean) * torch.rsqrt(var + self.head_dim * self.norm_eps) * self.norm_weight + self.norm_bias
        o = o + (r * k * self.r_k).sum(-1, keepdim=True) * v
        y = self.o_proj(rearrange(o, "b t h k -> b t (h k)") * gate)
        return y, {"recurrent": S, "shift": x[:, -1]}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, K = self.num_heads, self.head_dim
        return {
            "recurrent": torch.zeros(batch_size, H, K, K, **f),
            "shift": torch.zeros(batch_size, self.dim, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * self.head_dim**2 + self.dim
