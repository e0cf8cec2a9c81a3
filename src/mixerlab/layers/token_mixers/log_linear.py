"""Log-linear Mamba-2 token mixer: ``log_linear``.

Shapes: ``x: [B, T, D]``; inner width ``E = expand D`` in ``H = E / P`` heads of ``P = head_dim``
channels ``[B, T, H, P]``; ``B_t, C_t: [B, T, N]``; level weights ``[B, T, H, num_levels]``; state
``{"conv": [B, W-1, E + 2N], "levels": [B, L, H, P, N], "position": [B]}`` with
``L = bit_length(T - 1) + 1`` bucket states after ``T`` tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_divisible, check_positive_int
from mixerlab.layers.short_conv import ShortConv
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.layers.token_mixers.mamba2 import init_mamba2_decay_, mamba2_inputs, mamba2_readout
from mixerlab.ops.backends.fla import check_backend, log_linear_fits, log_linear_fla, use_fla
from mixerlab.ops.log_linear import log_linear_chunk, log_linear_reference, num_levels_after
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "log_linear",
    paper="Log-Linear Attention",
    arxiv="2506.04761",
    test_kwargs={"dim": 16, "expand": 2, "head_dim": 8, "state_dim": 4, "num_levels": 8, "chunk_size": 12},
    meta={
        "state": "(log2 T + 1) H P N + (W-1)(E + 2N) + 1 (one Mamba-2 state per Fenwick level)",
        "time": "O(T C E N + T log T E N) chunked",
        "memory": "O(T C H + T log(C) E)",
        "state_kind": "logarithmic",
    },
)
class LogLinearMamba2(TokenMixer):
    """Log-linear Mamba-2, "Log-Linear Attention" (arXiv:2506.04761).

    Mamba-2 (``mamba2``: input projection, short SiLU convolution, per-head scalar decay
    ``exp(dt_t A)``, ``D`` skip, gated RMSNorm) with its single state replaced by a Fenwick-tree
    partition of the prefix: token ``t`` sees ``O(log t)`` buckets, level 0 itself
    and level ``l`` the ``2^(l-1)`` tokens whose positions first differ from ``t`` at bit ``l - 1``;
    each bucket keeps its own Mamba-2 state and the read-out weights them per head::

        lambda_t = softplus(x_t W_lambda + b_lambda)                  ([H, num_levels], >= 0)
        y_t = sum_l lambda_t^(l) h_t^(l) C_t + D x'_t

    ``lambda = 1`` everywhere is Mamba-2 exactly. The state is the bucket states, so
    ``state_size`` grows as ``log2 T``; positions beyond ``2^(num_levels - 1)`` are an error, and
    the position is carried in the state as a float32 (exact to 2^24 tokens).

    Modes: ``"chunk"`` (masked quadratic form inside chunks, bucket states between them; see
    :func:`~mixerlab.ops.log_linear.log_linear_chunk`) and ``"reference"`` (per-step Fenwick updates).
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): a call from the first token (no state: a
    training step, a prefill) in chunk mode runs on fla's ``chunk_log_linear_attn`` for CUDA
    inputs when installed and the sizes fit it (``head_dim`` a power of two, ``state_dim`` a
    multiple of 64, fewer than ``2^16`` tokens); a call that continues a state runs on mixerlab's
    form, because fla's chunk-level state does not map onto the per-token buckets (see
    :func:`mixerlab.ops.backends.fla.log_linear_fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        head_dim: int = 64,
        state_dim: int = 64,
        conv_size: int = 4,
        num_levels: int = 24,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "log_linear"
        check_backend(name, backend)
        self.backend = backend
        for field, value in (
            ("dim", dim),
            ("expand", expand),
            ("head_dim", head_dim),
            ("state_dim", state_dim),
            ("num_levels", num_levels),
            ("chunk_size", chunk_size),
        ):
            check_positive_int(name, field, value)
        check(isinstance(conv_size, int) and conv_size >= 2, name, "conv_size", conv_size, "expected >= 2")
        check(norm_eps > 0, name, "norm_eps", norm_eps, "expected > 0")
        inner = expand * dim
        check_divisible(name, "expand * dim", inner, "head_dim", head_dim)
        check(
            backend != "fla" or log_linear_fits(1, head_dim, state_dim),
            name,
            "backend",
            backend,
            f"fla's kernel needs head_dim a power of two and state_dim a multiple of 64; got "
            f"head_dim={head_dim}, state_dim={state_dim} (use 'auto' or 'torch')",
        )
        self.dim, self.inner, self.head_dim, self.state_dim = dim, inner, head_dim, state_dim
        self.num_heads, self.num_levels = inner // head_dim, num_levels
        self.chunk_size, self.norm_eps = chunk_size, norm_eps
        H, N = self.num_heads, state_dim
        self.in_proj = nn.Linear(dim, 2 * inner + 2 * N + H, bias=False)
        self.conv = ShortConv(inner + 2 * N, conv_size, activation="silu", owner=name)
        self.level_proj = nn.Linear(dim, H * num_levels, bias=True)
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.D = nn.Parameter(torch.empty(H))
        self.norm_weight = nn.Parameter(torch.empty(inner))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2's init (``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1], ``D`` and the
        norm's gain one); the level weights' bias starts at ``softplus^-1(1)``: at first every level
        counts as in Mamba-2."""
        init_mamba2_decay_(self.A_log, self.dt_bias)
        nn.init.ones_(self.D)
        nn.init.ones_(self.norm_weight)
        self.level_proj.bias.fill_(math.log(math.e - 1.0))  # softplus^{-1}(1)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        H = self.num_heads
        position = 0 if state is None else int(state["position"][0].item())
        if (position + x.shape[1] - 1).bit_length() >= self.num_levels:
            raise ConfigError(
                "log_linear",
                "num_levels",
                self.num_levels,
                f"position {position + x.shape[1] - 1} needs more levels; allowed: positions below "
                f"2^(num_levels - 1) = {2 ** (self.num_levels - 1)}",
            )
        z, xs, dt, A, B_, C_, conv_state = mamba2_inputs(self, x, None if state is None else state["conv"])
        lam = rearrange(F.softplus(self.level_proj(x)), "b t (h l) -> b t h l", h=H)
        levels = None if state is None else state["levels"]
        args = (xs, dt, A, B_, C_, lam)
        if self.mode == "reference":
            y, levels = log_linear_reference(*args, states=levels, position=position)
        elif (
            state is None
            and log_linear_fits(x.shape[1], self.head_dim, self.state_dim)
            and use_fla("log_linear", self.backend, x)
        ):
            y, levels = log_linear_fla(*args)
        else:
            y, levels = log_linear_chunk(*args, states=levels, position=position, chunk_size=self.chunk_size)
        count = torch.full((x.shape[0],), float(position + x.shape[1]), device=x.device, dtype=torch.float32)
        return mamba2_readout(self, y, xs, z), {"conv": conv_state, "levels": levels, "position": count}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        shape = (batch_size, num_levels_after(0), self.num_heads, self.head_dim, self.state_dim)
        return {
            "conv": self.conv.init_state(batch_size, **f),
            "levels": torch.zeros(shape, **f),
            # float32, not an integer: states hold floating tensors only (exact to 2^24 tokens)
            "position": torch.zeros(batch_size, device=f["device"], dtype=torch.float32),
        }

    def state_size(self, seq_len: int) -> int:
        levels = num_levels_after(seq_len) * self.num_heads * self.head_dim * self.state_dim
        return self.conv.state_size() + levels + 1
