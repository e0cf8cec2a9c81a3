"""MemMamba (arXiv:2510.03279): a Mamba block with a bounded note pool of salient tokens.

Shapes: ``x: [B, T, D]``; Mamba's inner channels ``[B, T, E]``, SSM state ``[B, E, N]`` and
conv tail ``[B, W-1, E]`` (see :mod:`.ssm`); saliency ``[B, T]``; queries and notes
``[B, T, H, K]`` with ``H K = note_dim``; the pool ``[B, P, H, K]`` and its ``filled`` flags ``[B, P]``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.token_mixers.base import State
from mixerlab.layers.token_mixers.ssm import Mamba
from mixerlab.ops.note_pool import note_pool_parallel, note_pool_recurrent, note_pool_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "memmamba",
    paper="MemMamba: Rethinking Memory Patterns in State Space Model",
    arxiv="2510.03279",
    test_kwargs={
        "dim": 16,
        "expand": 2,
        "state_dim": 4,
        "conv_size": 4,
        "chunk_size": 8,
        "pool_size": 5,
        "num_heads": 2,
        "head_dim": 4,
    },
    meta={
        "state": "E N + E (W-1) + P (H K + 1)   (Mamba's state plus the note pool of P notes)",
        "time": "O(T E N + T D E + T P H K)",
        "memory": "O(T E + chunk E N + T P H K)",
        "state_kind": "fixed",
    },
)
class MemMamba(Mamba):
    """MemMamba, "MemMamba: Rethinking Memory Patterns in State Space Model" (arXiv:2510.03279).

    A Mamba block (:class:`~mixerlab.layers.token_mixers.ssm.Mamba`, same parameters and
    equations) whose output is augmented by cross-token attention over a bounded pool of notes,
    the paper's state summarisation::

        s_t = w . x_t + b                 (saliency logit)    salient_t = sigmoid(s_t) > threshold
        n_t = sigmoid(s_t) W_n x_t        (the note: a summary of the token, H K wide)
        pool: the last pool_size notes of salient tokens, first in first out (up to and with t)
        o_t = softmax_j(q_t . n_j / sqrt(K)) n_j   per head, q_t = W_q x_t;  0 on an empty pool
        y_t = mamba(x)_t + W_o o_t

    Choices made where the paper leaves room (it scores tokens and states against thresholds and
    keeps a fixed-size note block):

    - **Which tokens are summarised**: a learned linear saliency score with a fixed threshold on
      its sigmoid (deterministic and causal, unlike a top-k over the sequence). The hard decision
      has no gradient; the score still learns through ``sigmoid(s_t)``, which scales the note.
    - **Pool replacement**: first in, first out over salient tokens, so the pool after ``t``
      depends only on tokens up to ``t`` and has a parallel form (:mod:`mixerlab.ops.note_pool`).
    - **When attention fires**: at every token. The paper gates it by a threshold on a state
      importance score; a hard gate gives that score no gradient, and ``W_o`` learns how much of
      the read to use instead.
    - **Keys and values** are the notes themselves (a note is both its address and its content),
      which keeps the pool at ``H K`` scalars a note. The note width defaults to a quarter of
      the model width (``head_dim = dim / num_heads / 4``): a note is a summary, and the pool
      attention's windows ``[B, T, P, H, K]`` are its largest tensors.

    The read-out ``W_o`` starts at zero, so a new layer computes what Mamba computes and learns
    how much to read from its pool (``W_o`` gets a gradient from the first step, the rest of the
    pool from the second). This also keeps the hard saliency decision from making a fresh
    layer's output jump: a token within rounding of the threshold (taken in float32 even in
    bfloat16) changes which notes the pool holds, by design of a hard selection.

    Left out: the paper's **cross-layer attention** (every few layers, attention over the note
    pools of earlier layers). It needs state passed from layer to layer, and a token mixer only
    sees its own input and state (the per-layer contract); a model-level variant could add it.

    With ``pool_size=0`` it is :class:`Mamba` with the same weights. Modes: ``"scan"`` (Mamba's
    chunked selective scan and the gathered-window pool attention) and ``"reference"`` (the
    per-token loops of both); a one-token call takes the recurrent steps. State:
    ``{"conv": [B, W-1, E], "ssm": [B, E, N], "notes": [B, P, H K], "filled": [B, P]}``;
    its size is fixed (the pool is a fixed buffer with its occupancy flags). ``backend`` is
    Mamba's (the selective scan on fla's kernels for CUDA inputs); the pool runs in PyTorch.
    """

    def __init__(
        self,
        dim: int,
        expand: int = 2,
        state_dim: int = 16,
        dt_rank: int | None = None,
        conv_size: int = 4,
        chunk_size: int = 64,
        pool_size: int = 32,
        num_heads: int = 4,
        head_dim: int | None = None,
        threshold: float = 0.5,
        allow_negative_eigenvalues: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            dim,
            expand=expand,
            state_dim=state_dim,
            dt_rank=dt_rank,
            conv_size=conv_size,
            chunk_size=chunk_size,
            allow_negative_eigenvalues=allow_negative_eigenvalues,
            dt_min=dt_min,
            dt_max=dt_max,
            bias=bias,
            backend=backend,
        )
        name = "memmamba"
        check(
            isinstance(pool_size, int) and not isinstance(pool_size, bool) and pool_size >= 0,
            name,
            "pool_size",
            pool_size,
            "expected an integer >= 0 (0 turns the note pool off: plain Mamba)",
        )
        check_positive_int(name, "num_heads", num_heads)
        check_divisible(name, "dim", dim, "num_heads", num_heads)
        head_dim = max(dim // num_heads // 4, 1) if head_dim is None else head_dim
        check_positive_int(name, "head_dim", head_dim)
        note_dim = num_heads * head_dim
        check(
            isinstance(threshold, (int, float)) and 0 < threshold < 1,
            name,
            "threshold",
            threshold,
            "expected a number in (0, 1): the saliency probability a token must exceed",
        )
        self.pool_size, self.num_heads, self.head_dim = pool_size, num_heads, head_dim
        self.note_dim = note_dim
        self.threshold = float(threshold)
        if pool_size > 0:
            self.saliency = nn.Linear(dim, 1, bias=True)
            self.note_proj = nn.Linear(dim, note_dim, bias=False)
            self.query_proj = nn.Linear(dim, note_dim, bias=False)
            self.note_out = nn.Linear(note_dim, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, floor: float = 1e-4) -> None:
        """Mamba's step-size and ``A`` initialisation; the pool's read-out ``note_out`` starts at 0."""
        # Mamba's constructor calls this before the pool layers exist; drawing only once they do
        # keeps the draw order of a build equal to a meta build's (children first, then this),
        # and with pool_size=0 the weights equal a Mamba's built from the same seed.
        if hasattr(self, "pool_size"):
            super().reset_parameters(floor)
            if self.pool_size > 0:
                nn.init.zeros_(self.note_out.weight)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        inner = None if state is None else {"conv": state["conv"], "ssm": state["ssm"]}
        y, inner = super().forward(x, state=inner)
        if state is None:
            fresh = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
            notes, filled = fresh["notes"], fresh["filled"]
        else:
            notes, filled = state["notes"], state["filled"]
        if self.pool_size == 0:
            return y, {**inner, "notes": notes, "filled": filled}
        # the hard decision is discontinuous: taken in float32 even in half precision, so that
        # rounding flips only tokens within ~1e-3 of the threshold, not within ~1e-2
        wide = torch.float64 if x.dtype == torch.float64 else torch.float32
        logit = nn.functional.linear(x.to(wide), self.saliency.weight.to(wide), self.saliency.bias.to(wide))
        logit = logit[..., 0]  # [B, T]
        # sigmoid(s) > threshold  <=>  s > log(threshold / (1 - threshold))
        salient = logit > math.log(self.threshold / (1 - self.threshold))
        logit = logit.to(x.dtype)
        heads = {"pattern": "b t (h k) -> b t h k", "h": self.num_heads}
        q = rearrange(self.query_proj(x), **heads)
        new_notes = rearrange(torch.sigmoid(logit)[..., None] * self.note_proj(x), **heads)
        pool = rearrange(notes, "b p (h k) -> b p h k", h=self.num_heads)
        if self.mode == "reference":
            op = note_pool_reference
        elif x.shape[1] == 1:
            op = note_pool_recurrent
        else:
            op = note_pool_parallel
        read, pool, filled = op(q, new_notes, salient, pool, filled.to(x.dtype))
        y = y + self.note_out(rearrange(read, "b t h k -> b t (h k)"))
        notes = rearrange(pool, "b p h k -> b p (h k)")
        return y, {**inner, "notes": notes, "filled": filled.to(notes.dtype)}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        f = self._factory(device, dtype)
        return {
            **super().init_state(batch_size, **f),
            "notes": torch.zeros(batch_size, self.pool_size, self.note_dim, **f),
            "filled": torch.zeros(batch_size, self.pool_size, **f),
        }

    def state_size(self, seq_len: int) -> int:
        return super().state_size(seq_len) + self.pool_size * (self.note_dim + 1)
