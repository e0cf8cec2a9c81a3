"""Linear-attention token mixers: ``linear_attention``, ``retention`` and ``gla``.

All three are the gated linear attention op of :mod:`mixerlab.ops.linear_attention`
(``S_t = diag(a_t) S_{t-1} + k_t^T v_t``, ``o_t = q_t S_t``) with a different decay ``a_t``: none,
a fixed scalar per head, or a data-dependent vector over key channels. ``linear_attention`` also
has its paper's non-causal form (``causal=False``, sums over the whole sequence); ``retention``
and ``gla`` mix non-causally through the bidirectional wrapper (their decays define no other).

Each takes ``backend="auto" | "torch" | "fla"``: the chunk mode runs on flash-linear-attention's
kernels for CUDA inputs when it is installed (``auto``) or demanded (``fla``), else on mixerlab's
chunk form; the mapping of conventions is :mod:`mixerlab.ops.backends.fla`.

Shapes: ``x: [B, T, D]``; queries/keys ``[B, T, H, K]``; values ``[B, T, H, V]``; state
``S: [B, H, K, V]`` (plus ``z: [B, H, K]``, the running key sum, when normalised).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.noncausal import check_padding_mask, reject_state
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.backends.fla import (
    check_backend,
    linear_attention_fla,
    use_fla,
)
from mixerlab.ops.linear_attention import (
    linear_attention_chunk,
    linear_attention_noncausal_parallel,
    linear_attention_noncausal_reference,
    linear_attention_recurrent,
    linear_attention_reference,
)
from mixerlab.ops.rotary import rotary
from mixerlab.registry import TOKEN_MIXERS

FEATURE_MAPS = ("identity", "elu+1", "taylor")


def feature_map(x: Tensor, kind: str) -> Tensor:
    """``phi(x)`` over the last dim ``F``; ``taylor`` returns ``1 + F + F^2`` features.

    ``taylor`` is Based's second-order Taylor map (arXiv:2402.18668, authors' ``TaylorExp``):
    ``phi(x) = [1, x / F^(1/4), vec(x x^T) / (sqrt(2) sqrt(F))]``, so that
    ``phi(q) . phi(k) = 1 + q.k / sqrt(F) + (q.k)^2 / (2 F)``, the expansion of ``exp(q.k / sqrt(F))``.
    """
    if kind == "identity":
        return x
    if kind == "elu+1":
        return F.elu(x) + 1.0
    f = x.shape[-1]
    outer = rearrange(x[..., :, None] * x[..., None, :], "... i j -> ... (i j)")
    return torch.cat([torch.ones_like(x[..., :1]), x / f**0.25, outer / (math.sqrt(2.0) * f**0.5)], dim=-1)


def feature_size(kind: str, f: int) -> int:
    return 1 + f + f * f if kind == "taylor" else f


def run_linear_attention(
    mode: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor | None,
    state: Tensor,
    chunk_size: int,
    subchunk_size: int = 16,
    *,
    backend: str = "torch",
    owner: str = "linear_attention",
) -> tuple[Tensor, Tensor]:
    """Dispatch on ``mode``: ``reference`` loop, ``recurrent`` steps, or ``chunk`` (one token: a step).

    ``chunk`` runs on fla's kernels where ``backend`` selects them for this input
    (:mod:`mixerlab.ops.backends`); ``owner`` names the mixer in errors and warnings.
    """
    if mode == "reference":
        return linear_attention_reference(q, k, v, log_decay, initial_state=state)
    if mode == "recurrent" or q.shape[1] <= 1:
        outs = []
        for t in range(q.shape[1]):
            decay_t = None if log_decay is None else log_decay[:, t]
            o, state = linear_attention_recurrent(q[:, t], k[:, t], v[:, t], decay_t, state)
            outs.append(o)
        return (torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)), state
    if use_fla(owner, backend, q, gated=(q, k, v, log_decay)):
        return linear_attention_fla(q, k, v, log_decay, state)
    return linear_attention_chunk(
        q,
        k,
        v,
        log_decay,
        initial_state=state,
        chunk_size=chunk_size,
        subchunk_size=math.gcd(chunk_size, subchunk_size),
    )


def feature_qkv(
    x: Tensor, qk_proj: nn.Module, v_proj: nn.Module, num_heads: int, kind: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Queries and keys ``[B, T, H, F]`` through ``feature_map(., kind)``, values ``[B, T, H, V]``."""
    q, k = rearrange(qk_proj(x), "b t (two h f) -> two b t h f", two=2, h=num_heads)
    q, k = feature_map(q, kind), feature_map(k, kind)
    v = rearrange(v_proj(x), "b t (h v) -> b t h v", h=num_heads)
    return q, k, v


def normalized_linear_attention(
    mode: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    S: Tensor,
    z: Tensor,
    chunk_size: int,
    eps: float,
    *,
    backend: str = "torch",
    owner: str = "linear_attention",
) -> tuple[Tensor, Tensor, Tensor]:
    """``o_t = q_t S_t / (q_t . z_t + eps)`` with ``z_t = z_{t-1} + k_t``; returns ``(o, S, z)``.

    A column of ones appended to the values makes the op accumulate ``z`` as the last column of
    its state, so the normaliser costs no second pass.
    """
    v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    S = torch.cat([S, z[..., None]], dim=-1)
    o, S = run_linear_attention(mode, q, k, v, None, S, chunk_size, backend=backend, owner=owner)
    return o[..., :-1] / (o[..., -1:] + eps), S[..., :-1], S[..., -1]


def head_norm(o: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Group norm with one group per head: ``o: [B, T, H, V]``, ``weight, bias: [H, V]``."""
    return F.layer_norm(o, o.shape[-1:], eps=eps) * weight + bias


def _expanded(owner: str, field: str, dim: int, expand: float, num_heads: int) -> int:
    """Per-head size ``dim * expand / num_heads``; must be a positive integer."""
    check(isinstance(expand, (int, float)) and expand > 0, owner, field, expand, "expected a number > 0")
    total = dim * expand
    check(
        total == int(total) and int(total) % num_heads == 0 and total > 0,
        owner,
        field,
        expand,
        f"dim * {field} = {total} must be a positive integer divisible by num_heads={num_heads}",
    )
    return int(total) // num_heads


class _LinearAttentionBase(TokenMixer):
    """Shared state handling: ``{"S": [B, H, K, V]}``."""

    modes = ("chunk", "recurrent", "reference")
    num_heads: int
    key_dim: int
    value_dim: int

    def _check_chunk(self, owner: str, chunk_size: int, backend: str) -> None:
        check_positive_int(owner, "chunk_size", chunk_size)
        check_backend(owner, backend)
        self.chunk_size, self.backend, self.owner = chunk_size, backend, owner

    @property
    def _backend(self) -> dict[str, str]:
        return {"backend": self.backend, "owner": self.owner}

    def _gated_output(self, o: Tensor, gate_proj: nn.Module, x: Tensor) -> Tensor:
        """``(swish(x W_gate) * GroupNorm_heads(o)) W_O``: RetNet's and GLA's output stage."""
        o = head_norm(o, self.norm_weight, self.norm_bias, eps=1e-5)
        return self.o_proj(F.silu(gate_proj(x)) * rearrange(o, "b t h v -> b t (h v)"))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        shape = (batch_size, self.num_heads, self.key_dim, self.value_dim)
        return {"S": torch.zeros(shape, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return self.num_heads * self.key_dim * self.value_dim


@TOKEN_MIXERS.register(
    "linear_attention",
    paper="Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
    arxiv="2006.16236",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V (+ H K normaliser); K = 1 + F + F^2 for the taylor map",
        "time": "O(T C K V + T K V) per head",
        "memory": "O(T C + T K) per head",
        "state_kind": "fixed",
    },
)
class LinearAttention(_LinearAttentionBase):
    """Linear attention, "Transformers are RNNs" (arXiv:2006.16236).

    Per head, with a feature map ``phi`` (eq. 5-7 and 18-20 of the paper)::

        S_t = S_{t-1} + phi(k_t)^T v_t,     z_t = z_{t-1} + phi(k_t)
        o_t = phi(q_t) S_t / (phi(q_t) . z_t + eps)        (normalize=True)
        o_t = phi(q_t) S_t * F^(-1/2)                       (normalize=False; scaled like fla)

    ``feature_map``: ``elu+1`` (the paper's default), ``identity``, or ``taylor`` (Based's
    second-order Taylor map, arXiv:2402.18668), for which queries and keys are first projected to
    ``feature_dim`` (default 16, Based's) channels per head. ``identity`` needs ``normalize=False``:
    its denominator can be zero. ``eps = 1e-6`` as in the authors' code. The normaliser is carried as
    an extra value column of ones, so the state is ``{"S": [B, H, K, V], "z": [B, H, K]}``.

    ``causal=False`` is the paper's non-causal form (eq. 4-6): every query reads the sums over the
    whole sequence, ``o_t = phi(q_t) S_T / (phi(q_t) . z_T + eps)``, computed in one pass in every
    mode but ``reference`` (a loop). It carries no state (the state is ``{}``, ``state_size`` is 0,
    a non-empty ``state=`` is an error) and ``mask: [B, T]`` drops padded keys from both sums.
    """

    noncausal = "native"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        feature_map: str = "elu+1",
        feature_dim: int | None = None,
        normalize: bool = True,
        chunk_size: int = 64,
        bias: bool = False,
        causal: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "linear_attention"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check(isinstance(causal, bool), name, "causal", causal, "expected a bool")
        # Per instance: the causal form rejects a padding mask, the non-causal one reads it.
        self.causal, self.supports_mask = causal, not causal
        check_choice(name, "feature_map", feature_map, FEATURE_MAPS)
        check(isinstance(normalize, bool), name, "normalize", normalize, "expected a bool")
        check(
            not (normalize and feature_map == "identity"),
            name,
            "normalize",
            normalize,
            "the identity feature map can make the denominator zero; pass normalize=False",
        )
        if feature_dim is None:
            feature_dim = 16 if feature_map == "taylor" else self.head_dim
        check_positive_int(name, "feature_dim", feature_dim)
        self._check_chunk(name, chunk_size, backend)
        self.dim, self.num_heads, self.feature_map, self.normalize = dim, num_heads, feature_map, normalize
        self.feature_dim = feature_dim
        self.key_dim = feature_size(feature_map, feature_dim)
        self.value_dim = self.head_dim
        self.eps = 1e-6
        self.qk_proj = nn.Linear(dim, 2 * num_heads * feature_dim, bias=bias)
        self.v_proj = nn.Linear(dim, num_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, dim, bias=bias)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if not self.causal:
            return self._forward_noncausal(x, state, mask)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        q, k, v = feature_qkv(x, self.qk_proj, self.v_proj, self.num_heads, self.feature_map)
        if self.normalize:
            o, S, z = normalized_linear_attention(
                self.mode, q, k, v, state["S"], state["z"], self.chunk_size, self.eps, **self._backend
            )
            new_state = {"S": S, "z": z}
        else:
            q = q * self.feature_dim**-0.5
            o, S = run_linear_attention(
                self.mode, q, k, v, None, state["S"], self.chunk_size, **self._backend
            )
            new_state = {"S": S}
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), new_state

    def _forward_noncausal(self, x: Tensor, state: State | None, mask: Tensor | None) -> tuple[Tensor, State]:
        reject_state("linear_attention", state)
        check_padding_mask("linear_attention", mask, x)
        q, k, v = feature_qkv(x, self.qk_proj, self.v_proj, self.num_heads, self.feature_map)
        if mask is not None:  # a zero key adds nothing to S or z
            k = k * mask[:, :, None, None].to(k.dtype)
        op = (
            linear_attention_noncausal_reference
            if self.mode == "reference"
            else linear_attention_noncausal_parallel
        )
        if self.normalize:
            # A column of ones among the values makes the last output column q_t . z_T.
            o = op(q, k, torch.cat([v, torch.ones_like(v[..., :1])], dim=-1))
            o = o[..., :-1] / (o[..., -1:] + self.eps)
        else:
            o = op(q * self.feature_dim**-0.5, k, v)
        return self.o_proj(rearrange(o, "b t h v -> b t (h v)")), {}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        if not self.causal:
            return {}
        state = super().init_state(batch_size, device=device, dtype=dtype)
        if self.normalize:
            state["z"] = state["S"].new_zeros(batch_size, self.num_heads, self.key_dim)
        return state

    def state_size(self, seq_len: int) -> int:
        if not self.causal:
            return 0
        return self.num_heads * self.key_dim * (self.value_dim + int(self.normalize))


@TOKEN_MIXERS.register(
    "retention",
    paper="Retentive Network: A Successor to Transformer for Large Language Models",
    arxiv="2307.08621",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V (V = expand_v K)",
        "time": "O(T C K V + T K V) per head",
        "memory": "O(T C + T K) per head",
        "state_kind": "fixed",
    },
)
class Retention(_LinearAttentionBase):
    """Multi-scale retention, "Retentive Network" (arXiv:2307.08621).

    Per head ``h`` with the fixed decay ``gamma_h = 1 - 2^(-5 - h)`` (section 2.2, ``h = 0..H-1``)::

        S_n = gamma_h S_{n-1} + (R_n k_n)^T v_n,      o_n = (R_n q_n) S_n
        Y = GroupNorm_heads(o);   out = (swish(X W_G) * Y) W_O

    ``R_n`` is the rotation of the paper's ``Theta`` (xPos without its scale factor, whose role is
    taken by ``gamma``), applied here as rotary embedding with base 10000; ``k`` is scaled by
    ``K^-1/2``. Values are ``expand_v = 2`` times the key width per head, the paper's layout.

    Rotations only matter through ``n - m``, so the state is kept in the frame of the last token,
    ``S~_n = R_{-n} S_n``, which needs no position counter: ``S~_n = gamma R_{-1} S~_{n-1} + k_n^T v_n``
    and ``o_n = q_n S~_n``. The reference mode runs exactly that loop (a complex-valued decay);
    the fast modes rotate by positions within the call and turn the state back at the end.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        expand_v: int = 2,
        rotary_base: float = 10000.0,
        chunk_size: int = 64,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "retention"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_positive_int(name, "expand_v", expand_v)
        check(rotary_base > 0, name, "rotary_base", rotary_base, "expected > 0")
        self._check_chunk(name, chunk_size, backend)
        self.dim, self.num_heads, self.rotary_base = dim, num_heads, rotary_base
        self.key_dim, self.value_dim = self.head_dim, expand_v * self.head_dim
        K, V = self.key_dim, self.value_dim
        self.qk_proj = nn.Linear(dim, 2 * num_heads * K, bias=bias)
        self.v_proj = nn.Linear(dim, num_heads * V, bias=bias)
        self.g_proj = nn.Linear(dim, num_heads * V, bias=bias)
        self.o_proj = nn.Linear(num_heads * V, dim, bias=bias)
        self.norm_weight = nn.Parameter(torch.empty(num_heads, V))
        self.norm_bias = nn.Parameter(torch.empty(num_heads, V))
        self.register_buffer("log_gamma", torch.empty(num_heads, dtype=torch.float64), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The heads' norm (gain one, bias zero) and the fixed decays, which are computed from the
        number of heads and so recomputed here (a meta-built layer needs them after ``to_empty``)."""
        nn.init.ones_(self.norm_weight)
        nn.init.zeros_(self.norm_bias)
        heads = torch.arange(self.num_heads, dtype=torch.float64, device=self.log_gamma.device)
        self.log_gamma.copy_((1.0 - 2.0 ** (-5.0 - heads)).log())

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, device=x.device, dtype=x.dtype)
        q, k = rearrange(self.qk_proj(x), "b t (two h k) -> two b t h k", two=2, h=self.num_heads)
        k = k * self.key_dim**-0.5
        v = rearrange(self.v_proj(x), "b t (h v) -> b t h v", h=self.num_heads)
        log_decay = self.log_gamma.to(x.dtype).expand(B, T, self.num_heads)
        if self.mode == "reference":
            o, S = self._reference(q, k, v, state["S"])
        else:
            # Frame of the token before this call = position 0, so new tokens sit at 1..T.
            positions = torch.arange(1, T + 1, device=x.device)
            q, k = rotary(q, positions, self.rotary_base), rotary(k, positions, self.rotary_base)
            o, S = run_linear_attention(
                self.mode, q, k, v, log_decay, state["S"], self.chunk_size, **self._backend
            )
            S = self._rotate_state(S, -T)
        return self._gated_output(o, self.g_proj, x), {"S": S}

    def _rotate_state(self, S: Tensor, position: int) -> Tensor:
        """Apply ``R_position`` to the key side of ``S: [B, H, K, V]``."""
        cols = rearrange(S, "b h k v -> b v h k")
        positions = torch.full((cols.shape[1],), position, device=S.device)
        return rearrange(rotary(cols, positions, self.rotary_base), "b v h k -> b h k v")

    def _reference(self, q: Tensor, k: Tensor, v: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
        gamma = self.log_gamma.to(q.dtype).exp()[None, :, None, None]
        outs = []
        for t in range(q.shape[1]):
            S = gamma * self._rotate_state(S, -1) + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
            outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
        return (torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)), S


@TOKEN_MIXERS.register(
    "gla",
    paper="Gated Linear Attention Transformers with Hardware-Efficient Training",
    arxiv="2312.06635",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 12},
    meta={
        "state": "H K V (K = expand_k D / H, V = expand_v D / H)",
        "time": "O(T C K V + T c C K + T K V) per head",
        "memory": "O(T C + T c K) per head",
        "state_kind": "fixed",
    },
)
class GatedLinearAttention(_LinearAttentionBase):
    """Gated linear attention, "Gated Linear Attention Transformers ..." (arXiv:2312.06635).

    Per head, with a data-dependent gate over the key channels (section 4.4)::

        alpha_t = sigmoid(x_t W_a1 W_a2 + b_a)^(1 / tau)        (low rank 16, tau = 16)
        S_t = diag(alpha_t) S_{t-1} + k_t^T v_t,   o_t = (q_t K^-1/2) S_t
        out = (swish(x_t W_r) * GroupNorm_heads(o_t)) W_O

    Defaults are the paper's: ``expand_k = 0.5``, ``expand_v = 1``, gate rank 16, ``tau = 16``.
    Training uses the one-level chunk form with a second level of 16-step sub-chunks (gcd with
    ``chunk_size``) for the intra-chunk scores, all in log space with non-positive exponents.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        expand_k: float = 0.5,
        expand_v: float = 1.0,
        gate_rank: int = 16,
        gate_temperature: float = 16.0,
        chunk_size: int = 64,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "gla"
        resolve_heads(name, dim, num_heads, None)
        self.key_dim = _expanded(name, "expand_k", dim, expand_k, num_heads)
        self.value_dim = _expanded(name, "expand_v", dim, expand_v, num_heads)
        check_positive_int(name, "gate_rank", gate_rank)
        check(gate_temperature > 0, name, "gate_temperature", gate_temperature, "expected > 0")
        self._check_chunk(name, chunk_size, backend)
        self.dim, self.num_heads, self.gate_temperature = dim, num_heads, gate_temperature
        HK, HV = num_heads * self.key_dim, num_heads * self.value_dim
        self.qk_proj = nn.Linear(dim, 2 * HK, bias=bias)
        self.v_proj = nn.Linear(dim, HV, bias=bias)
        self.gate_down = nn.Linear(dim, gate_rank, bias=False)
        self.gate_up = nn.Linear(gate_rank, HK, bias=True)
        self.r_proj = nn.Linear(dim, HV, bias=bias)
        self.o_proj = nn.Linear(HV, dim, bias=bias)
        self.norm_weight = nn.Parameter(torch.empty(num_heads, self.value_dim))
        self.norm_bias = nn.Parameter(torch.empty(num_heads, self.value_dim))
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
        q, k = rearrange(self.qk_proj(x), "b t (two h k) -> two b t h k", two=2, h=H)
        q = q * self.key_dim**-0.5
        v = rearrange(self.v_proj(x), "b t (h v) -> b t h v", h=H)
        # log(sigmoid(.)^(1/tau)), computed without forming the sigmoid (exact near 0 and 1).
        log_alpha = F.logsigmoid(self.gate_up(self.gate_down(x))) / self.gate_temperature
        log_alpha = rearrange(log_alpha, "b t (h k) -> b t h k", h=H)
        o, S = run_linear_attention(
            self.mode, q, k, v, log_alpha, state["S"], self.chunk_size, **self._backend
        )
        return self._gated_output(o, self.r_proj, x), {"S": S}
