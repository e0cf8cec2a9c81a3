"""Gated slot attention token mixer: ``gsa``.

Shapes: ``x: [B, T, D]``; queries, keys ``[B, T, H, K]``, values ``[B, T, H, K]`` (``K = D / H``),
forget gates ``[B, T, H, M]`` (``M = num_slots``); state ``{"key_slots": [B, H, M, K],
"value_slots": [B, H, M, K]}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.layers.token_mixers.linear_attention import head_norm
from mixerlab.ops.backends.fla import check_backend, gsa_fla, use_fla
from mixerlab.ops.gsa import gsa_chunk, gsa_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "gsa",
    paper="Gated Slot Attention for Efficient Linear-Time Sequence Modeling",
    arxiv="2409.07146",
    test_kwargs={"dim": 16, "num_heads": 2, "num_slots": 6, "chunk_size": 12},
    meta={
        "state": "H M 2K (M slots of keys and of values, K = D / H)",
        "time": "O(T C M (K + V) + T M (K + V)) per head",
        "memory": "O(T C M) per head",
        "state_kind": "fixed",
    },
)
class GatedSlotAttention(TokenMixer):
    """Gated Slot Attention, "Gated Slot Attention for Efficient Linear-Time ..." (arXiv:2409.07146).

    ABC's bounded memory of ``M`` slots (write with ``1 - alpha``, read with a softmax over slots)
    with GLA's data-dependent forget gate shared by the key and value slots::

        alpha_t = sigmoid(x_t W_a)^(1 / tau)                     ([H, M], tau = 8)
        K_t = diag(alpha_t) K_{t-1} + (1 - alpha_t)^T k_t,  V_t = diag(alpha_t) V_{t-1} + (1 - alpha_t)^T v_t
        o_t = V_t^T softmax(K_t q_t),    out = (SiLU(x_t W_g) * GroupNorm_heads(o_t)) W_o

    with ``q, k = SiLU(x W_q), SiLU(x W_k)`` (the paper's Swish feature map) and ``q`` scaled by
    ``K^-1/2``. Defaults are the paper's: 64 slots, ``tau = 8``. Modes: ``"chunk"`` (two chunked
    passes, :func:`~mixerlab.ops.gsa.gsa_chunk`) and ``"reference"`` (per-step loop).
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): the chunk mode runs on fla's ``chunk_gsa``
    for CUDA inputs when installed (see :mod:`mixerlab.ops.backends.fla`).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        num_slots: int = 64,
        gate_temperature: float = 8.0,
        chunk_size: int = 16,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "gsa"
        check_backend(name, backend)
        self.backend = backend
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "num_slots", num_slots)
        check_positive_int(name, "chunk_size", chunk_size)
        check(gate_temperature > 0, name, "gate_temperature", gate_temperature, "expected > 0")
        self.dim, self.num_heads, self.num_slots = dim, num_heads, num_slots
        self.gate_temperature, self.chunk_size = float(gate_temperature), chunk_size
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.forget_proj = nn.Linear(dim, num_heads * num_slots, bias=True)
        self.g_proj = nn.Linear(dim, dim, bias=bias)
        self.o_proj = nn.Linear(dim, dim, bias=bias)
        self.norm_weight = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.norm_bias = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The heads' norm: gain one, bias zero (the projections initialise themselves)."""
        nn.init.ones_(self.norm_weight)
        nn.init.zeros_(self.norm_bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        H = self.num_heads
        q, k, v = rearrange(self.qkv_proj(x), "b t (three h k) -> three b t h k", three=3, h=H)
        q, k = F.silu(q) * self.head_dim**-0.5, F.silu(k)
        log_alpha = F.logsigmoid(self.forget_proj(x)) / self.gate_temperature
        log_alpha = rearrange(log_alpha, "b t (h m) -> b t h m", h=H)
        slots = {"key_slots": state["key_slots"], "value_slots": state["value_slots"]}
        if self.mode == "reference":
            o, Ks, Vs = gsa_reference(q, k, v, log_alpha, **slots)
        elif x.shape[1] > 1 and use_fla("gsa", self.backend, x):
            o, Ks, Vs = gsa_fla(q, k, v, log_alpha, **slots)
        else:
            o, Ks, Vs = gsa_chunk(q, k, v, log_alpha, **slots, chunk_size=self.chunk_size)
        o = rearrange(head_norm(o, self.norm_weight, self.norm_bias, eps=1e-5), "b t h v -> b t (h v)")
        return self.o_proj(F.silu(self.g_proj(x)) * o), {"key_slots": Ks, "value_slots": Vs}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        shape = (batch_size, self.num_heads, self.num_slots, self.head_dim)
        factory = self._factory(device, dtype)
        return {"key_slots": torch.zeros(shape, **factory), "value_slots": torch.zeros(shape, **factory)}

    def state_size(self, seq_len: int) -> int:
        return 2 * self.num_heads * self.num_slots * self.head_dim
