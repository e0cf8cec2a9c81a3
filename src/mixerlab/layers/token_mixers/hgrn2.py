"""HGRN2 token mixer: ``hgrn2``, HGRN with an outer-product (expanded) state.

Shapes: ``x: [B, T, D]``; queries, forget gates and keys ``[B, T, H, K]`` (``K = state_dim``, the
state expansion); values ``[B, T, H, V]`` with ``V = D / H``; state ``S: [B, H, K, V]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.layers.token_mixers.linear_attention import head_norm, run_linear_attention
from mixerlab.ops.backends.fla import check_backend
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "hgrn2",
    paper="HGRN2: Gated Linear RNNs with State Expansion",
    arxiv="2404.07904",
    test_kwargs={"dim": 16, "num_heads": 2, "state_dim": 4, "lower_bound": 0.25, "chunk_size": 12},
    meta={
        "state": "H K V (K = state_dim, V = D / H)",
        "time": "O(T C K V + T K V) per head",
        "memory": "O(T C + T K) per head",
        "state_kind": "fixed",
    },
)
class HGRN2(TokenMixer):
    """HGRN2: Gated Linear RNNs with State Expansion (arXiv:2404.07904).

    HGRN's element-wise recurrence with its forget gate widened into ``K = state_dim`` channels
    per head and the tied input gate ``1 - f_t`` used as the key of an outer product::

        f_t = gamma + (1 - gamma) * sigmoid(x_t W_f)          ([H, K], lower-bounded by gamma)
        S_t = diag(f_t) S_{t-1} + (1 - f_t)^T (x_t W_i)        ([H, K, V])
        o_t = SiLU(x_t W_q) S_t
        out = (sigmoid(x_t W_g) * GroupNorm_heads(o_t)) W_O

    which is the gated-linear-attention recurrence with ``k_t = 1 - f_t`` (no key projection), so
    training runs :func:`~mixerlab.ops.linear_attention.linear_attention_chunk`. As in ``hgrn``,
    the paper's per-layer learned lower bound (monotone across the stack) is the fixed option
    ``lower_bound`` in ``[0, 1)`` of a single mixer (0 = the first layer, no bound); the output
    gate is HGRN's. Modes: ``"chunk"``, ``"recurrent"`` (per-step op) and ``"reference"``.
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``) picks the chunk form's kernels: fla's
    ``chunk_gla`` for CUDA inputs when installed (see :mod:`mixerlab.ops.backends`).
    """

    modes = ("chunk", "recurrent", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        state_dim: int = 16,
        lower_bound: float = 0.0,
        chunk_size: int = 64,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "hgrn2"
        self.value_dim = resolve_heads(name, dim, num_heads, None)
        check_positive_int(name, "state_dim", state_dim)
        check_positive_int(name, "chunk_size", chunk_size)
        check_backend(name, backend)
        self.backend = backend
        check(
            isinstance(lower_bound, (int, float)) and 0.0 <= lower_bound < 1.0,
            name,
            "lower_bound",
            lower_bound,
            "expected 0 <= lower_bound < 1",
        )
        self.dim, self.num_heads, self.key_dim = dim, num_heads, state_dim
        self.lower_bound, self.chunk_size = float(lower_bound), chunk_size
        HK = num_heads * state_dim
        self.qf_proj = nn.Linear(dim, 2 * HK, bias=bias)
        self.i_proj = nn.Linear(dim, dim, bias=bias)
        self.g_proj = nn.Linear(dim, dim, bias=bias)
        self.o_proj = nn.Linear(dim, dim, bias=bias)
        self.norm_weight = nn.Parameter(torch.empty(num_heads, self.value_dim))
        self.norm_bias = nn.Parameter(torch.empty(num_heads, self.value_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The heads' norm: gain one, bias zero (the projections initialise themselves)."""
        nn.init.ones_(self.norm_weight)
        nn.init.zeros_(self.norm_bias)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys ``1 - f_t`` and ``log f_t``, each ``[B, T, H, K]``."""
        q, f = rearrange(self.qf_proj(x), "b t (two h k) -> two b t h k", two=2, h=self.num_heads)
        lb = self.lower_bound
        if lb == 0.0:
            # log sigmoid and 1 - sigmoid = sigmoid(-z) directly: exact as the gate closes or opens
            log_f, k = F.logsigmoid(f), torch.sigmoid(-f)
        else:
            gate = lb + (1 - lb) * torch.sigmoid(f)
            log_f, k = gate.log(), (1 - lb) * torch.sigmoid(-f)
        return F.silu(q), k, log_f

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        q, k, log_f = self.gates(x)
        v = rearrange(self.i_proj(x), "b t (h v) -> b t h v", h=self.num_heads)
        o, S = run_linear_attention(
            self.mode, q, k, v, log_f, state["S"], self.chunk_size, backend=self.backend, owner="hgrn2"
        )
        o = rearrange(head_norm(o, self.norm_weight, self.norm_bias, eps=1e-5), "b t h v -> b t (h v)")
        return self.o_proj(torch.sigmoid(self.g_proj(x)) * o), {"S": S}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        shape = (batch_size, self.num_heads, self.key_dim, self.value_dim)
        return {"S": torch.zeros(shape, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * self.key_dim * self.value_dim
