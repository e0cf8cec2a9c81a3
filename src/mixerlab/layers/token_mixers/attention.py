"""Softmax attention token mixers: ``attention`` (global, causal) and ``sliding_window`` (local).

Both are natively non-causal (``noncausal = "native"``): built with ``causal=False`` they drop the
causal mask (``sliding_window``: a symmetric window), honour a padding mask ``[B, T]`` as a key
mask, and carry no state (the state is ``{}``, ``state_size`` is 0, a non-empty ``state=`` such
as a key/value cache is an error): decoding has no meaning when every token reads the tokens after
it.

Shapes: ``x: [B, T, D]``; queries ``[B, T, H, K]``; keys/values ``[B, T, G, K]`` with ``G`` key/value
heads (grouped-query attention, arXiv:2305.13245); rotary positions (arXiv:2104.09864).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.noncausal import check_padding_mask, reject_state
from mixerlab.layers.token_mixers.base import State, TokenMixer, resolve_heads
from mixerlab.ops.attention import (
    attention_local_chunk,
    attention_packed,
    attention_parallel,
    attention_reference,
    document_positions,
)
from mixerlab.ops.rotary import rotary, rotary_tables
from mixerlab.registry import TOKEN_MIXERS


class _SoftmaxAttention(TokenMixer):
    modes = ("sdpa", "reference")
    noncausal = "native"

    def __init__(
        self,
        name: str,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None,
        head_dim: int | None,
        rotary_base: float | None,
        bias: bool,
        window: int | None,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.head_dim = resolve_heads(name, dim, num_heads, head_dim)
        check(isinstance(causal, bool), name, "causal", causal, "expected a bool")
        # Per instance: the causal form rejects a padding mask, the non-causal one reads it.
        self.causal, self.supports_mask, self._owner = causal, not causal, name
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        check_positive_int(name, "num_kv_heads", num_kv_heads)
        check_divisible(name, "num_heads", num_heads, "num_kv_heads", num_kv_heads)
        check(
            rotary_base is None or rotary_base > 0, name, "rotary_base", rotary_base, "expected > 0 or None"
        )
        self.dim, self.num_heads, self.num_kv_heads = dim, num_heads, num_kv_heads
        self.rotary_base, self.window = rotary_base, window
        K = self.head_dim
        self.q_proj = nn.Linear(dim, num_heads * K, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * num_kv_heads * K, bias=bias)
        self.o_proj = nn.Linear(num_heads * K, dim, bias=bias)
        self._build_gate(dim, bias)

    def _build_gate(self, dim: int, bias: bool) -> None:
        """Hook creating the parameters :meth:`_gate_heads` uses (none here), after the projections."""

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = rearrange(self.q_proj(x), "b t (h k) -> b t h k", h=self.num_heads)
        k, v = rearrange(self.kv_proj(x), "b t (two g k) -> two b t g k", two=2, g=self.num_kv_heads)
        return q, k, v

    def _rotate(self, q: Tensor, k: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Rotate ``k: [B, S, G, K]`` to positions ``start .. start + S - 1`` and ``q: [B, T, H, K]``
        to the last ``T`` of them, with one table."""
        if self.rotary_base is None:
            return q, k
        positions = torch.arange(start, start + k.shape[1], device=k.device)
        cos, sin = rotary_tables(positions, k.shape[-1], k.dtype, self.rotary_base)
        past = k.shape[1] - q.shape[1]
        q_tables = (cos[past:], sin[past:])
        return rotary(q, positions[past:], tables=q_tables), rotary(k, positions, tables=(cos, sin))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        options = {"window": self.window, "causal": self.causal, "key_mask": key_mask}
        if self.mode == "reference":
            o = attention_reference(q, k, v, **options)
        elif self.mode == "chunk" and q.shape[1] > 1:
            o = attention_local_chunk(q, k, v, **options)
        else:
            o = attention_parallel(q, k, v, **options)
        return self.o_proj(rearrange(self._gate_heads(o, x), "b t h v -> b t (h v)"))

    def _gate_heads(self, o: Tensor, x: Tensor) -> Tensor:
        """Hook on the heads' outputs ``o: [B, T, H, V]`` before the output projection."""
        return o

    def _forward_noncausal(self, x: Tensor, state: State | None, mask: Tensor | None) -> tuple[Tensor, State]:
        """Every query reads every key (within the symmetric window), padded keys hidden by ``mask``."""
        reject_state(self._owner, state)
        check_padding_mask(self._owner, mask, x)
        q, k, v = self._project(x)
        q, k = self._rotate(q, k, 0)
        return self._attend(q, k, v, x, key_mask=mask), {}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        if not self.causal:
            return {}
        empty = torch.zeros(batch_size, 0, self.num_kv_heads, self.head_dim, **self._factory(device, dtype))
        return {"k": empty, "v": empty.clone()}


@TOKEN_MIXERS.register(
    "attention",
    paper="Attention Is All You Need",
    arxiv="1706.03762",
    test_kwargs={"dim": 16, "num_heads": 4, "num_kv_heads": 2},
    meta={
        "state": "2 T G K (key/value cache)",
        "time": "O(T^2 D)",
        "memory": "O(T D)",
        "state_kind": "growing",
    },
)
class Attention(_SoftmaxAttention):
    """Causal softmax attention, "Attention Is All You Need" (arXiv:1706.03762).

    ``o_t = sum_{s<=t} softmax_s(q_t . k_s / sqrt(K)) v_s`` per head, with rotary positions on
    ``q`` and ``k`` and ``num_kv_heads`` shared key/value heads (grouped-query attention). The
    state is the key/value cache ``{"k", "v": [B, S, G, K]}``; keys are cached after rotation, so
    the position of the next token is the cache length.

    ``causal=False`` is the paper's encoder self-attention, ``o_t = sum_s softmax_s(...) v_s`` over
    every position: no state (module docstring), and ``mask: [B, T]`` hides padded keys.
    """

    name: ClassVar[str] = "attention"  # the owner named in configuration errors
    packed = "native"

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
        causal: bool = True,
    ) -> None:
        super().__init__(
            self.name, dim, num_heads, num_kv_heads, head_dim, rotary_base, bias, window=None, causal=causal
        )

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if not self.causal:
            return self._forward_noncausal(x, state, mask)
        q, k, v = self._project(x)
        past = 0 if state is None else state["k"].shape[1]
        q, k = self._rotate(q, k, past)
        if state is not None:
            k = torch.cat([state["k"], k], dim=1)
            v = torch.cat([state["v"], v], dim=1)
        return self._attend(q, k, v, x), {"k": k, "v": v}

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        """Packed documents (see :meth:`TokenMixer.forward_packed`): projections and rotary once
        for the row, with positions restarting at each document (after its cache, if ``states``
        gives one), then one SDPA call per document (:func:`attention_packed`). Mode
        ``reference`` runs each document alone."""
        lengths = self._check_packed(x, cu_seqlens, states)
        if not self.causal:
            reject_state(self._owner, states)
        if self.mode == "reference":
            return self._forward_split(x, lengths, states)
        q, k, v = self._project(x)
        pasts = [0] * len(lengths) if states is None else [s["k"].shape[1] for s in states]
        if self.rotary_base is not None:  # a document's new tokens follow its cache
            doc, pos = document_positions(lengths, x.device)
            pos = pos + torch.tensor(pasts, device=x.device)[doc]
            tables = rotary_tables(pos, self.head_dim, k.dtype, self.rotary_base)
            q, k = rotary(q, pos, tables=tables), rotary(k, pos, tables=tables)
        ks, vs = k.split(lengths, dim=1), v.split(lengths, dim=1)
        if states is not None:
            ks = [torch.cat([s["k"], k_i], dim=1) for s, k_i in zip(states, ks)]
            vs = [torch.cat([s["v"], v_i], dim=1) for s, v_i in zip(states, vs)]
        o = attention_packed(
            q,
            torch.cat(ks, dim=1),
            torch.cat(vs, dim=1),
            q_lengths=lengths,
            k_lengths=[p + n for p, n in zip(pasts, lengths)],
            causal=self.causal,
        )
        y = self.o_proj(rearrange(self._gate_heads(o, x), "b t h v -> b t (h v)"))
        if not self.causal:  # no state non-causally (module docstring)
            return y, [{} for _ in lengths]
        return y, [{"k": k_i, "v": v_i} for k_i, v_i in zip(ks, vs)]

    def state_size(self, seq_len: int) -> int:
        if not self.causal:
            return 0
        return 2 * seq_len * self.num_kv_heads * self.head_dim


@TOKEN_MIXERS.register(
    "sliding_window",
    paper="Longformer: The Long-Document Transformer (causal local attention)",
    arxiv="2004.05150",
    test_kwargs={"dim": 16, "num_heads": 2, "window": 4},
    meta={"state": "2 (w-1) G K", "time": "O(T w D)", "memory": "O(T D)", "state_kind": "fixed"},
)
class SlidingWindowAttention(_SoftmaxAttention):
    """Causal sliding-window attention, "Longformer" (arXiv:2004.05150), local causal variant.

    Each token attends to itself and the ``window - 1`` tokens before it, so the state holds at most
    ``window - 1`` keys and values. Keys are cached *before* rotation and rotated by their position
    within the kept window: rotary scores depend only on relative position, so this equals
    rotating by absolute position while keeping the state bounded (no position counter).
    Modes: ``chunk`` (blocks of ``window`` queries against ``2 * window`` keys, O(T w)), ``sdpa``
    (one banded mask, O(T^2)), ``reference``.

    ``causal=False`` is Longformer's own (symmetric) local attention: each token reads the
    ``window - 1`` tokens on each side of it and itself; ``chunk`` then reads ``3 * window`` keys per
    block. No state (module docstring); ``mask: [B, T]`` hides padded keys.
    """

    modes = ("chunk", "sdpa", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        window: int = 64,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotary_base: float | None = 10000.0,
        bias: bool = False,
        causal: bool = True,
    ) -> None:
        check_positive_int("sliding_window", "window", window)
        super().__init__(
            "sliding_window",
            dim,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_base,
            bias,
            window=window,
            causal=causal,
        )

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        if not self.causal:
            return self._forward_noncausal(x, state, mask)
        q, k_raw, v = self._project(x)
        if state is not None:
            k_raw = torch.cat([state["k"], k_raw], dim=1)
            v = torch.cat([state["v"], v], dim=1)
        q, k = self._rotate(q, k_raw, 0)
        y = self._attend(q, k, v, x)
        keep = self.window - 1
        start = max(0, k_raw.shape[1] - keep)
        return y, {"k": k_raw[:, start:], "v": v[:, start:]}

    def state_size(self, seq_len: int) -> int:
        if not self.causal:
            return 0
        return 2 * min(seq_len, self.window - 1) * self.num_kv_heads * self.head_dim
