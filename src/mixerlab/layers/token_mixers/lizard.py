"""Lizard token mixer: ``lizard`` (gated linear attention + sliding window with meta memory).

Shapes: ``x: [B, T, D]``; queries/keys/values ``[B, T, H, K]``; features ``[B, T, H, 2F]``; state
``{"S": [B, H, 2F, K], "meta_k", "meta_v": [B, m, H, K], "k", "v": [B, w, H, K]}`` with
``m = min(T, num_meta)`` and ``w = min(max(T - num_meta, 0), window - 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.lizard import lizard_chunk, lizard_recurrent, lizard_reference
from mixerlab.ops.rotary import rotary, rotary_tables
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "lizard",
    paper="Lizard: An Efficient Linearization Framework for Large Language Models",
    arxiv="2507.09025",
    test_kwargs={"dim": 16, "num_heads": 2, "window": 4, "num_meta": 2, "chunk_size": 8},
    meta={
        "state": "H 2F K + 2 (num_meta + window - 1) H K",
        "time": "O(T C F K + T (num_meta + 2 window) K) per head",
        "memory": "O(T C + T (num_meta + 2 window)) per head",
        "state_kind": "fixed",
    },
)
class Lizard(TokenMixer):
    """Lizard attention, "Lizard: An Efficient Linearization Framework for LLMs" (arXiv:2507.09025).

    One layer, two branches on shared query/key/value projections (section 3), per head::

        phi(x)  = [softmax(x W_phi), softmax(-x W_phi)]              (2F features, Hedgehog-style)
        a_t     = sigmoid(x_t W_a1 W_a2 + b_a)^(1 / tau)              (GLA's low-rank gate, over 2F)
        S_t     = diag(a_t) S_{t-1} + phi(k_t)^T v_t,   o^gla_t = phi(q_t) S_t
        o^swa_t = softmax attention of q_t over the meta memory (the first ``num_meta`` positions)
                  and the ``window`` most recent positions (each position read once)
        o_t     = alpha_h o^gla_t + beta_h o^swa_t,     out = o W_O

    Choices where the paper leaves room (or where we could not check its text):

    - *meta memory* is the sequence's first ``num_meta`` tokens, kept for ever (attention sinks,
      as StreamingLLM, arXiv:2309.17453), not extra learned tokens;
    - rotary positions (``rotary_base``; ``None`` disables them) are applied in the softmax branch
      only, the gate giving the linear branch its sense of recency. Positions are StreamingLLM's
      cache positions: a window key is scored at its true distance, a meta key ``j`` at distance
      ``min(t, num_meta + window - 1) - j``, so the state needs no position counter and decoding
      never rotates past the trained range;
    - the feature map is Hedgehog's softmax map (arXiv:2402.04347) with a per-head ``K x F``
      matrix initialised to the identity when ``F == K`` (``feature_dim``, default ``head_dim``);
    - the branches are combined by learnable per-head weights ``alpha`` and ``beta`` (both 1 at
      the start), with no normaliser shared between them.

    The state holds the linear branch's matrix and the keys/values of the meta memory and the
    window (keys before rotation): its size stops growing after ``num_meta + window - 1`` tokens.
    Modes: ``chunk`` (GLA chunk op + blocked window attention, one token: the recurrent step) and
    ``reference`` (the per-step loop).
    """

    modes = ("chunk", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        window: int = 64,
        num_meta: int = 4,
        feature_dim: int | None = None,
        gate_rank: int = 16,
        gate_temperature: float = 16.0,
        rotary_base: float | None = 10000.0,
        chunk_size: int = 64,
        bias: bool = False,
    ) -> None:
        super().__init__()
        name = "lizard"
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check_positive_int(name, "window", window)
        check(
            isinstance(num_meta, int) and not isinstance(num_meta, bool) and num_meta >= 0,
            name,
            "num_meta",
            num_meta,
            "expected an integer >= 0",
        )
        feature_dim = self.head_dim if feature_dim is None else feature_dim
        check_positive_int(name, "feature_dim", feature_dim)
        check_positive_int(name, "gate_rank", gate_rank)
        check_positive_int(name, "chunk_size", chunk_size)
        check(gate_temperature > 0, name, "gate_temperature", gate_temperature, "expected > 0")
        check(
            rotary_base is None or (rotary_base > 0 and self.head_dim % 2 == 0),
            name,
            "rotary_base",
            rotary_base,
            "expected > 0 (with an even head_dim) or None",
        )
        self.dim, self.num_heads, self.window, self.num_meta = dim, num_heads, window, num_meta
        self.feature_dim, self.gate_temperature = feature_dim, gate_temperature
        self.rotary_base, self.chunk_size = rotary_base, chunk_size
        H, K = num_heads, self.head_dim
        self.q_proj = nn.Linear(dim, H * K, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * H * K, bias=bias)
        self.o_proj = nn.Linear(H * K, dim, bias=bias)
        self.feature_weight = nn.Parameter(torch.empty(H, K, feature_dim))
        self.gate_down = nn.Linear(dim, gate_rank, bias=False)
        self.gate_up = nn.Linear(gate_rank, H * 2 * feature_dim, bias=True)
        self.alpha = nn.Parameter(torch.empty(H))
        self.beta = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Feature maps at the identity (``F == K``; else scaled normal), both branch weights at 1."""
        K, F_ = self.head_dim, self.feature_dim
        if F_ == K:
            self.feature_weight.copy_(torch.eye(K).expand(self.num_heads, K, K))
        else:
            nn.init.normal_(self.feature_weight, std=K**-0.5)
        nn.init.ones_(self.alpha)
        nn.init.ones_(self.beta)

    def _features(self, x: Tensor) -> Tensor:
        """Hedgehog's map ``[softmax(x W), softmax(-x W)]``: ``[B, T, H, K] -> [B, T, H, 2F]``."""
        z = torch.einsum("bthk,hkf->bthf", x, self.feature_weight.to(x.dtype))
        return torch.cat([torch.softmax(z, dim=-1), torch.softmax(-z, dim=-1)], dim=-1)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, device=x.device, dtype=x.dtype)
        H = self.num_heads
        q = rearrange(self.q_proj(x), "b t (h k) -> b t h k", h=H)
        k, v = rearrange(self.kv_proj(x), "b t (two h k) -> two b t h k", two=2, h=H)
        # Cache-index space: meta memory, cached window, new tokens (see ops/lizard/reference.py).
        k_all = torch.cat([state["meta_k"], state["k"], k], dim=1)
        v_all = torch.cat([state["meta_v"], state["v"], v], dim=1)
        Tk = k_all.shape[1]
        q_window = q_meta = q
        k_rot = k_all
        if self.rotary_base is not None:  # one table for the keys' positions serves all three
            positions = torch.arange(Tk, device=x.device)
            cos, sin = rotary_tables(positions, self.head_dim, x.dtype, self.rotary_base)
            k_rot = rotary(k_all, positions, tables=(cos, sin))
            q_pos = positions[Tk - T :]
            q_window = rotary(q, q_pos, tables=(cos[Tk - T :], sin[Tk - T :]))
            meta_pos = q_pos.clamp(max=self.num_meta + self.window - 1)
            q_meta = rotary(q, meta_pos, tables=(cos[meta_pos], sin[meta_pos]))
        phi_q, phi_k = self._features(q), self._features(k)
        log_decay = F.logsigmoid(self.gate_up(self.gate_down(x))) / self.gate_temperature
        log_decay = rearrange(log_decay, "b t (h f) -> b t h f", h=H)
        alpha, beta = self.alpha.to(x.dtype), self.beta.to(x.dtype)
        options = {"window": self.window, "num_meta": self.num_meta}
        if self.mode == "reference":
            o, S = lizard_reference(
                q_window, q_meta, k_rot, v_all, phi_q, phi_k, log_decay, alpha, beta,
                initial_state=state["S"], **options,
            )  # fmt: skip
        elif T == 1:
            o, S = lizard_recurrent(
                q_window[:, 0], q_meta[:, 0], k_rot, v_all, phi_q[:, 0], phi_k[:, 0], log_decay[:, 0],
                alpha, beta, state=state["S"], **options,
            )  # fmt: skip
            o = o[:, None]
        else:
            o, S = lizard_chunk(
                q_window, q_meta, k_rot, v_all, phi_q, phi_k, log_decay, alpha, beta,
                initial_state=state["S"], chunk_size=self.chunk_size, **options,
            )  # fmt: skip
        meta_end = min(Tk, self.num_meta)
        window_start = max(meta_end, Tk - (self.window - 1))
        new_state = {
            "S": S,
            "meta_k": k_all[:, :meta_end],
            "meta_v": v_all[:, :meta_end],
            "k": k_all[:, window_start:],
            "v": v_all[:, window_start:],
        }
        return self.o_proj(rearrange(o, "b t h k -> b t (h k)")), new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        factory = self._factory(device, dtype)
        H, K = self.num_heads, self.head_dim
        empty = torch.zeros(batch_size, 0, H, K, **factory)
        return {
            "S": torch.zeros(batch_size, H, 2 * self.feature_dim, K, **factory),
            "meta_k": empty,
            "meta_v": empty.clone(),
            "k": empty.clone(),
            "v": empty.clone(),
        }

    def state_size(self, seq_len: int) -> int:
        H, K = self.num_heads, self.head_dim
        cached = min(seq_len, self.num_meta) + min(max(seq_len - self.num_meta, 0), self.window - 1)
        return H * 2 * self.feature_dim * K + 2 * cached * H * K
