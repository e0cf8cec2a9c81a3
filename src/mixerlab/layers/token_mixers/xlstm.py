"""xLSTM token mixers: ``mlstm`` (matrix memory, parallelisable) and ``slstm`` (scalar memory with
recurrent connections), "xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517).

Shapes: ``x: [B, T, D]``; heads ``[B, T, H, K]`` (queries/keys), ``[B, T, H, V]`` (values);
gate pre-activations ``[B, T, H]`` (mLSTM, one scalar gate per head) or ``[B, T, H, 4, Dh]``
(sLSTM, one gate per cell). The maths lives in :mod:`mixerlab.ops.mlstm` and
:mod:`mixerlab.ops.slstm`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.mlstm import mlstm_chunk, mlstm_recurrent, mlstm_reference
from mixerlab.ops.slstm import slstm_recurrent, slstm_reference, slstm_sequential
from mixerlab.registry import TOKEN_MIXERS


def _head_rmsnorm(h: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    """RMS norm over each head's channels ``[B, T, H, V]`` then a per-channel weight ``[H V]``."""
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + eps)
    return rearrange(h, "b t h v -> b t (h v)") * weight


@TOKEN_MIXERS.register(
    "mlstm",
    paper="xLSTM: Extended Long Short-Term Memory (mLSTM)",
    arxiv="2405.04517",
    test_kwargs={"dim": 16, "num_heads": 2, "chunk_size": 8},
    meta={
        "state": "H K V + H K + H",
        "time": "O(T L D + T D K) (chunk length L)",
        "memory": "O(T D + T L H)",
        "state_kind": "fixed",
    },
)
class MLSTM(TokenMixer):
    """xLSTM mLSTM layer, "xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517).

    Per head, with ``q_t, k_t, v_t`` linear in ``x_t`` and scalar gates::

        i_t = exp(i~_t)     f_t = sigmoid(f~_t)      (exponential input gate, sigmoid forget gate)
        C_t = f_t C_{t-1} + i_t k_t v_t^T        n_t = f_t n_{t-1} + i_t k_t
        h_t = C_t^T q_t / max(|n_t . q_t|, 1)     (q scaled by 1/sqrt(K))
        y   = W_out (sigmoid(W_o x_t) * RMSNorm_head(h_t))

    Computed with the max-state stabiliser ``m_t = max(log f_t + m_{t-1}, log i_t)``; the state is
    ``{"C": [B, H, K, V], "n": [B, H, K], "m": [B, H]}`` where ``C, n`` are the true memory scaled
    by ``exp(-m)`` (see :mod:`mixerlab.ops.mlstm.reference`, ``m = 0`` for an empty state). The
    layer layout follows the authors' released xLSTM-7B ``mLSTMLayer`` (no up-projection or
    convolution inside the mixer, per-head norm, sigmoid output gate, gate pre-activations
    soft-capped at ``gate_soft_cap = 15``, input-gate bias -10, forget-gate bias linspace(3, 6)),
    and ``eps = 1e-6`` in the normaliser as in their kernels.

    Modes: ``"chunk"`` (chunkwise-parallel, default), ``"reference"`` (per-step loop). A single
    token with the chunk mode takes the one-step recurrent update.
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        chunk_size: int = 64,
        gate_soft_cap: float | None = 15.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "mlstm"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_positive_int(name, "chunk_size", chunk_size)
        check(
            gate_soft_cap is None or gate_soft_cap > 0,
            name,
            "gate_soft_cap",
            gate_soft_cap,
            "expected > 0 or None",
        )
        self.dim, self.num_heads, self.chunk_size = dim, num_heads, chunk_size
        self.gate_soft_cap = gate_soft_cap
        inner = num_heads * self.head_dim
        self.in_proj = nn.Linear(dim, 4 * inner, bias=bias)  # q, k, v, output gate
        self.gate_proj = nn.Linear(dim, 2 * num_heads, bias=True)  # input, forget gates
        self.norm_weight = nn.Parameter(torch.empty(inner))
        self.out_proj = nn.Linear(inner, dim, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' gate biases: input gates -10 (closed), forget gates spread over [3, 6]
        across heads (mostly open); the norm's gain one."""
        H, bias = self.num_heads, self.gate_proj.bias
        nn.init.ones_(self.norm_weight)
        bias[:H].fill_(-10.0)
        bias[H:].copy_(torch.linspace(3.0, 6.0, H, device=bias.device))

    def _cap(self, g: Tensor) -> Tensor:
        c = self.gate_soft_cap
        return g if c is None else c * torch.tanh(g / c)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        H = self.num_heads
        q, k, v, o = rearrange(self.in_proj(x), "b t (four h k) -> four b t h k", four=4, h=H)
        i_pre, f_pre = rearrange(self._cap(self.gate_proj(x)), "b t (two h) -> two b t h", two=2)
        log_i, log_f = i_pre, F.logsigmoid(f_pre)
        st = None if state is None else (state["C"], state["n"], state["m"])
        if self.mode == "reference":
            h, (C, n, m) = mlstm_reference(q, k, v, log_i, log_f, state=st)
        elif x.shape[1] == 1:
            st = st if st is not None else tuple(self.init_state(x.shape[0], dtype=x.dtype).values())
            h, (C, n, m) = mlstm_recurrent(q[:, 0], k[:, 0], v[:, 0], log_i[:, 0], log_f[:, 0], st)
            h = h[:, None]
        else:
            h, (C, n, m) = mlstm_chunk(q, k, v, log_i, log_f, state=st, chunk_size=self.chunk_size)
        y = torch.sigmoid(rearrange(o, "b t h v -> b t (h v)")) * _head_rmsnorm(h, self.norm_weight)
        return self.out_proj(y), {"C": C, "n": n, "m": m}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        H, K = self.num_heads, self.head_dim
        return {
            "C": torch.zeros(batch_size, H, K, K, **f),
            "n": torch.zeros(batch_size, H, K, **f),
            "m": torch.zeros(batch_size, H, **f),
        }

    def state_size(self, seq_len: int) -> int:
        H, K = self.num_heads, self.head_dim
        return H * K * K + H * K + H


@TOKEN_MIXERS.register(
    "slstm",
    paper="xLSTM: Extended Long Short-Term Memory (sLSTM)",
    arxiv="2405.04517",
    test_kwargs={"dim": 16, "num_heads": 2, "conv_size": 4},
    meta={
        "state": "4 D + (conv_size - 1) D",
        "time": "O(T D^2 / H + T D^2) (sequential in T)",
        "memory": "O(T D)",
        "state_kind": "fixed",
    },
)
class SLSTM(TokenMixer):
    """xLSTM sLSTM layer, "xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517).

    Per head (``Dh = D / H`` cells) with block-diagonal recurrent matrices ``R_g``::

        x'   = swish(causal_conv(x))                       (feeds the input and forget gates)
        i~ = W_i x' + R_i h_{t-1} + b_i     f~ = W_f x' + R_f h_{t-1} + b_f
        z~ = W_z x  + R_z h_{t-1} + b_z     o~ = W_o x  + R_o h_{t-1} + b_o
        c_t = f_t c_{t-1} + i_t tanh(z~)    n_t = f_t n_{t-1} + i_t    h_t = sigmoid(o~) c_t / n_t
        y   = W_out LayerNorm_head(h)

    with ``i = exp(i~)``, ``f = sigmoid(f~)`` and the max-state stabiliser (state
    ``{"c", "n", "m", "h": [B, H, Dh]}``, plus ``"conv": [B, conv_size - 1, D]``; see
    :mod:`mixerlab.ops.slstm.reference`). As in the paper's sLSTM block, a causal convolution
    (``conv_size = 4``, ``nn.Conv1d``'s init as in the authors' code; ``None`` disables it) with
    swish feeds the input and forget gates; the output passes a per-head norm. Input weights are
    dense here (the authors use head-wise blocks); an output projection makes the layer a drop-in
    mixer.

    The recurrent connections make the sLSTM inherently sequential (the paper trains it with a
    fused step loop), so the default ``"recurrent"`` mode computes the input projections for all
    tokens at once and runs a fused step loop (one batched matmul for all heads and gates per step,
    preallocated buffers, a hand-written backward; :func:`mixerlab.ops.slstm.slstm_sequential`);
    ``"reference"`` loops over heads and steps separately.
    """

    modes = ("recurrent", "reference")
    # the fused step loop writes into slices of preallocated buffers with out=, which Dynamo
    # cannot trace; compiled, the loop runs eagerly between graphs
    compile_fullgraph = False

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        conv_size: int | None = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "slstm"
        self.head_dim = resolve_heads(name, dim, num_heads, None)
        if conv_size is not None:
            check_positive_int(name, "conv_size", conv_size)
            check(conv_size >= 2, name, "conv_size", conv_size, "expected >= 2 or None (no convolution)")
        self.dim, self.num_heads, self.conv_size = dim, num_heads, conv_size
        H, Dh = num_heads, self.head_dim
        if conv_size is not None:
            self.conv = ShortConv(dim, conv_size, activation="silu", owner=name)
            load_legacy_conv_keys(self, "conv")
        self.if_proj = nn.Linear(dim, 2 * dim, bias=False)
        self.zo_proj = nn.Linear(dim, 2 * dim, bias=False)
        self.recurrent = nn.Parameter(torch.empty(H, Dh, 4, Dh))
        self.gate_bias = nn.Parameter(torch.empty(4, H, Dh))
        self.norm_weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()  # drawn before out_proj, as always: seeded weights unchanged
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Block-diagonal recurrent weights ``N(0, 1/(4 Dh))``; forget-gate biases spread over
        [3, 6] across heads (mostly open), other biases zero; the norm's gain one."""
        H, Dh, dev = self.num_heads, self.head_dim, self.recurrent.device
        self.recurrent.copy_(torch.randn(H, Dh, 4, Dh, device=dev) / Dh**0.5 * 0.5)
        nn.init.zeros_(self.gate_bias)
        self.gate_bias[1] = torch.linspace(3.0, 6.0, H, device=dev)[:, None]  # forget gates start mostly open
        nn.init.ones_(self.norm_weight)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if x.shape[1] == 0:  # nothing to mix; the short convolution needs at least one token
            return self.out_proj(x), dict(state) if state is not None else self.init_state(
                x.shape[0], dtype=x.dtype
            )
        reference = self.mode == "reference"
        new_state: State = {}
        gate_in = x
        if self.conv_size is not None:
            tail = None if state is None else state["conv"]
            gate_in, new_state["conv"] = self.conv(x, tail, reference=reference)
        H = self.num_heads
        wx_if = rearrange(self.if_proj(gate_in), "b t (g h d) -> b t h g d", g=2, h=H)
        wx_zo = rearrange(self.zo_proj(x), "b t (g h d) -> b t h g d", g=2, h=H)
        wx = torch.cat([wx_if, wx_zo], dim=3) + rearrange(self.gate_bias, "g h d -> h g d")
        st = None if state is None else (state["c"], state["n"], state["m"], state["h"])
        if reference:
            h, (c, n, m, hl) = slstm_reference(wx, self.recurrent, state=st)
        elif x.shape[1] == 1 and st is not None:
            h, (c, n, m, hl) = slstm_recurrent(wx[:, 0], self.recurrent, st)
            h = h[:, None]
        else:
            h, (c, n, m, hl) = slstm_sequential(wx, self.recurrent, state=st)
        h = F.layer_norm(h, (self.head_dim,), eps=1e-6)
        y = self.out_proj(rearrange(h, "b t h d -> b t (h d)") * self.norm_weight)
        new_state.update({"c": c, "n": n, "m": m, "h": hl})
        return y, new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        cell = torch.zeros(batch_size, self.num_heads, self.head_dim, **f)
        state: State = {}
        if self.conv_size is not None:
            state["conv"] = self.conv.init_state(batch_size, **f)
        state.update({"c": cell, "n": cell.clone(), "m": cell.clone(), "h": cell.clone()})
        return state

    def state_size(self, seq_len: int) -> int:
        conv = 0 if self.conv_size is None else self.conv.state_size()
        return 4 * self.dim + conv
