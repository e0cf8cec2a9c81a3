"""Delta-rule token mixers: ``deltanet`` and ``gated_deltanet``.

Shapes: ``x: [B, T, D]``; queries/keys ``[B, T, H, K]``; values ``[B, T, H, V]``; per-head gates
``beta, g: [B, T, H]``; recurrent state ``[B, H, K, V]``; short-conv tail ``[B, W-1, C]`` over the
concatenated ``q, k, v`` channels ``C = H (2K + V)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.layers.token_mixers.mamba2 import init_mamba2_decay_
from mixerlab.ops.backends.fla import (
    FLA_DTYPES,
    FLA_HALF_DTYPES,
    check_backend,
    delta_rule_fla,
    use_fla,
)
from mixerlab.ops.delta_rule import delta_rule_chunk, delta_rule_recurrent, delta_rule_reference
from mixerlab.registry import TOKEN_MIXERS


def check_delta_options(
    name: str,
    dim: int,
    num_heads: int,
    head_dim: int | None,
    expand: int,
    conv_size: int | None,
    chunk_size: int,
    norm_eps: float,
) -> int:
    """The options every delta-rule-family mixer shares, checked; returns the key head dim ``K``."""
    resolved = resolve_heads(name, dim, num_heads, head_dim)
    check_positive_int(name, "expand", expand)
    check_positive_int(name, "chunk_size", chunk_size)
    check(
        conv_size is None or (isinstance(conv_size, int) and conv_size >= 2),
        name,
        "conv_size",
        conv_size,
        "expected an integer >= 2, or None to disable the short convolution",
    )
    check(norm_eps > 0, name, "norm_eps", norm_eps, "expected > 0")
    return resolved


def check_bool(name: str, field: str, value: object) -> None:
    check(isinstance(value, bool), name, field, value, "expected True or False")


class DeltaState:
    """The state of a delta-rule-family mixer: a ``[B, H, K, V]`` matrix plus the short-conv tail.

    For mixers with ``num_heads``, ``head_dim``, ``value_dim``, ``conv_size`` and (if
    ``conv_size``) ``conv``; listed before :class:`TokenMixer` in the bases.
    """

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, K, V = self.num_heads, self.head_dim, self.value_dim
        state: State = {"recurrent": torch.zeros(batch_size, H, K, V, **f)}
        if self.conv_size is not None:
            state["conv"] = self.conv.init_state(batch_size, **f)
        return state

    def state_size(self, seq_len: int) -> int:
        conv = 0 if self.conv_size is None else self.conv.state_size()
        return self.num_heads * self.head_dim * self.value_dim + conv


class _DeltaRuleMixer(DeltaState, TokenMixer):
    """Shared body: projections, short convs, L2-normalised q/k, beta, the op, output norm."""

    modes = ("chunk", "reference")

    def __init__(
        self,
        name: str,
        dim: int,
        num_heads: int,
        head_dim: int | None,
        expand: int,
        conv_size: int | None,
        chunk_size: int,
        allow_negative_eigenvalues: bool,
        norm_eps: float,
        backend: str,
    ) -> None:
        super().__init__()
        self.head_dim = check_delta_options(
            name, dim, num_heads, head_dim, expand, conv_size, chunk_size, norm_eps
        )
        check_bool(name, "allow_negative_eigenvalues", allow_negative_eigenvalues)
        check_backend(name, backend)
        self.backend, self._owner = backend, name
        self.dim, self.num_heads = dim, num_heads
        self.value_dim = expand * self.head_dim
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.allow_negative_eigenvalues, self.norm_eps = allow_negative_eigenvalues, norm_eps
        H, K, V = num_heads, self.head_dim, self.value_dim
        self.qkv_proj = nn.Linear(dim, H * (2 * K + V), bias=False)
        self.b_proj = nn.Linear(dim, H, bias=False)
        if conv_size is not None:  # one conv over the concatenated q, k, v channels, no bias (fla's)
            self.conv = ShortConv(H * (2 * K + V), conv_size, bias=False, owner=name)
            load_legacy_conv_keys(self, "conv")
        self.norm_weight = nn.Parameter(torch.empty(V))
        self.o_proj = nn.Linear(H * V, dim, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The output norm's gain starts at one (projections and conv initialise themselves)."""
        nn.init.ones_(self.norm_weight)

    # -- pieces ----------------------------------------------------------------------------

    def _decay(self, x: Tensor) -> Tensor | None:
        return None

    def _gate(self, o: Tensor, x: Tensor) -> Tensor:
        return o

    def _qkvb(self, x: Tensor, conv_state: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, State]:
        qkv = self.qkv_proj(x)
        new_state: State = {}
        if self.conv_size is not None:
            qkv, new_state["conv"] = self.conv(qkv, conv_state, reference=self.mode == "reference")
        # The authors' default: SiLU on q, k, v (after the short conv), then L2-normalised q and k.
        qkv = F.silu(qkv)
        H, K = self.num_heads, self.head_dim
        q, k, v = qkv.split([H * K, H * K, H * self.value_dim], dim=-1)
        q = F.normalize(rearrange(q, "b t (h k) -> b t h k", h=H), dim=-1)
        k = F.normalize(rearrange(k, "b t (h k) -> b t h k", h=H), dim=-1)
        v = rearrange(v, "b t (h v) -> b t h v", h=H)
        beta = torch.sigmoid(self.b_proj(x))  # [B, T, H]
        if self.allow_negative_eigenvalues:
            beta = 2.0 * beta  # eigenvalue 1 - beta of (I - beta k k^T) now spans [-1, 1]
        return q, k, v, beta, new_state

    # -- contract ---------------------------------------------------------------------------

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        q, k, v, beta, new_state = self._qkvb(x, None if state is None else state.get("conv"))
        g = self._decay(x)
        S0 = None if state is None else state["recurrent"]
        if x.shape[1] == 1 and S0 is not None and self.mode != "reference":
            o, S = delta_rule_recurrent(
                q[:, 0], k[:, 0], v[:, 0], beta[:, 0], None if g is None else g[:, 0], S0
            )
            o = o[:, None]
        elif self.mode == "reference":
            o, S = delta_rule_reference(q, k, v, beta, g, state=S0)
        # fla's ungated chunk_delta_rule refuses float32 (fla 0.6); its gated kernel takes it
        elif use_fla(
            self._owner,
            self.backend,
            q,
            dtypes=FLA_HALF_DTYPES if g is None else FLA_DTYPES,
            gated=(q, k, v, beta, g),
        ):
            o, S = delta_rule_fla(q, k, v, beta, g, state=S0)
        else:
            o, S = delta_rule_chunk(q, k, v, beta, g, state=S0, chunk_size=self.chunk_size)
        new_state["recurrent"] = S
        # Per-head RMSNorm on the read-out (authors' default), then the optional output gate.
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps) * self.norm_weight
        o = self._gate(o, x)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), new_state


@TOKEN_MIXERS.register(
    "deltanet",
    paper="Parallelizing Linear Transformers with the Delta Rule over Sequence Length",
    arxiv="2406.06484",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V + (W-1) H (2K + V) (conv tail)",
        "time": "O(T C D + T D^2 / H) chunked (C = chunk_size)",
        "memory": "O(T C H + T D)",
        "state_kind": "fixed",
    },
)
class DeltaNet(_DeltaRuleMixer):
    """Parallelizing Linear Transformers with the Delta Rule over Sequence Length (arXiv:2406.06484).

    DeltaNet, per head, with the state ``S_t in R^{V x K}`` (stored transposed, ``[B, H, K, V]``)::

        q_t, k_t = L2norm(SiLU(conv(W_q x)_t)), L2norm(SiLU(conv(W_k x)_t))
        v_t      = SiLU(conv(W_v x)_t),          beta_t = sigmoid(w_beta . x_t)
        S_t      = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
        o_t      = RMSNorm(S_t q_t / sqrt(K)),   y_t = W_o [o_t^1; ...; o_t^H]

    ``conv`` is a short causal depthwise convolution (``conv_size=4``, the authors' default;
    ``None`` disables it). ``allow_negative_eigenvalues=True`` ("Unlocking State-Tracking in Linear
    RNNs Through Negative Eigenvalues", arXiv:2411.12537) uses ``beta_t = 2 sigmoid(.)``, so the
    transition ``I - beta_t k_t k_t^T`` has eigenvalues in ``[-1, 1]`` instead of ``[0, 1]``.
    The fast form is the chunkwise WY/UT-transform algorithm (``ops.delta_rule.chunk``);
    ``chunk_size=64`` was the fastest of 32-256 on a 2-core CPU (fwd+bwd, T=1024 and 4096).
    ``backend`` (``"auto"``, ``"torch"``, ``"fla"``) picks the chunk form's kernels: fla's
    ``chunk_delta_rule`` for CUDA inputs when installed (see :mod:`mixerlab.ops.backends`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        conv_size: int | None = 4,
        chunk_size: int = 64,
        allow_negative_eigenvalues: bool = False,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            "deltanet",
            dim,
            num_heads,
            head_dim,
            1,
            conv_size,
            chunk_size,
            allow_negative_eigenvalues,
            norm_eps,
            backend,
        )
        self.reset_parameters()


@TOKEN_MIXERS.register(
    "gated_deltanet",
    paper="Gated Delta Networks: Improving Mamba2 with Delta Rule",
    arxiv="2412.06464",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V + (W-1) H (2K + V) (conv tail), V = expand K",
        "time": "O(T C D + T D^2 / H) chunked (C = chunk_size)",
        "memory": "O(T C H + T D)",
        "state_kind": "fixed",
    },
)
class GatedDeltaNet(_DeltaRuleMixer):
    """Gated DeltaNet, "Gated Delta Networks: Improving Mamba2 with Delta Rule" (arXiv:2412.06464).

    DeltaNet's update with a data-dependent scalar decay per head (Mamba-2's gate)::

        alpha_t = exp(g_t),  g_t = -exp(A_log) * softplus(w_a . x_t + dt_bias)
        S_t     = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
        o_t     = RMSNorm(S_t q_t / sqrt(K)) * SiLU(W_g x_t)

    with ``q, k, v, beta`` as in DeltaNet. As in the authors' code: values are ``expand=2`` times
    wider than keys, ``A = exp(A_log)`` starts uniform in ``[1, 16]`` and ``softplus(dt_bias)``
    log-uniform in ``[1e-3, 0.1]``. The chunk form carries the cumulative log-decay and
    exponentiates only non-positive numbers. ``allow_negative_eigenvalues`` as in ``deltanet``.
    ``backend`` as in ``deltanet``, with fla's ``chunk_gated_delta_rule`` (mixerlab's form, with a
    warning, where fla refuses the backward: Hopper with Triton < 3.7.1).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        expand: int = 2,
        conv_size: int | None = 4,
        chunk_size: int = 64,
        allow_negative_eigenvalues: bool = False,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            "gated_deltanet",
            dim,
            num_heads,
            head_dim,
            expand,
            conv_size,
            chunk_size,
            allow_negative_eigenvalues,
            norm_eps,
            backend,
        )
        H = num_heads
        self.a_proj = nn.Linear(dim, H, bias=False)
        self.g_proj = nn.Linear(dim, H * self.value_dim, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2's decay init: ``A`` uniform in [1, 16], ``dt`` log-uniform in [1e-3, 0.1]."""
        super().reset_parameters()
        init_mamba2_decay_(self.A_log, self.dt_bias)

    def _decay(self, x: Tensor) -> Tensor:
        return -torch.exp(self.A_log) * F.softplus(self.a_proj(x) + self.dt_bias)

    def _gate(self, o: Tensor, x: Tensor) -> Tensor:
        gate = rearrange(self.g_proj(x), "b t (h v) -> b t h v", h=self.num_heads)
        return o * F.silu(gate)
