"""Block-diagonal input-dependent linear RNN: ``block_diag_lrnn``.

Shapes: ``x: [B, T, D]``; ``G = D / K`` blocks of size ``K = block_size``; transitions
``A_t: [B, T, G, K, K]``; state ``{"h": [B, G, K]}``.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.block_scan import block_scan_chunk, block_scan_recurrent, block_scan_reference
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "block_diag_lrnn",
    paper="Advancing Regular Language Reasoning in Linear Recurrent Neural Networks",
    arxiv="2309.07412",
    test_kwargs={"dim": 16, "block_size": 4, "chunk_size": 8},
    meta={
        "state": "D",
        "time": "O(T D K (D + hidden_dim)) (block generator) + O(T D K^2) (scan)",
        "memory": "O(T D K)",
        "state_kind": "fixed",
    },
)
class BlockDiagonalLRNN(TokenMixer):
    """Advancing Regular Language Reasoning in Linear Recurrent Neural Networks (arXiv:2309.07412).

    A linear RNN whose transition depends on the input and is block-diagonal:

        A_t = blockdiag(A_t^1, ..., A_t^G),   A_t^g = normalize(reshape(MLP_A(x_t))^g)  (K x K)
        h_t = A_t h_{t-1} + MLP_v(x_t),        y_t = h_t

    with two-layer ReLU MLPs ``MLP_A: D -> hidden_dim -> D K`` (one ``K x K`` block per group of
    ``K`` state entries) and ``MLP_v: D -> D -> D`` as in the authors' code, where ``hidden_dim``
    defaults to their ``D K``. That generator has ``~(D K)^2`` weights (4.2M at ``D=256, K=8``) and
    dominates the cost; a smaller ``hidden_dim`` (e.g. ``D``) cuts it ``K``-fold. For stability each block
    is normalised column-wise: its columns are centred (zero mean over rows) and the block is
    divided by the largest column ``p``-norm, so every column has ``p``-norm at most 1 (the
    authors' code uses ``p = 1.2``; ``block_size = 8`` is the default of their modular-arithmetic
    run). The state before the first token is a learned vector ``h_{-1}: [G, K]``, also what
    ``init_state`` returns.

    Modes: ``"scan"`` (:func:`block_scan_chunk`: ``chunk_size`` positions walked for all chunks at
    once, then ``T / chunk_size`` chunk carries; ``T D K^2`` flops for the running products) and
    ``"reference"`` (per-step loop).
    """

    modes = ("scan", "reference")

    def __init__(
        self,
        dim: int,
        block_size: int = 8,
        hidden_dim: int | None = None,
        p_norm: float = 1.2,
        chunk_size: int = 32,
    ) -> None:
        super().__init__()
        name = "block_diag_lrnn"
        check_positive_int(name, "dim", dim)
        check_positive_int(name, "block_size", block_size)
        check_divisible(name, "dim", dim, "block_size", block_size)
        check_positive_int(name, "chunk_size", chunk_size)
        check(isinstance(p_norm, (int, float)) and p_norm >= 1, name, "p_norm", p_norm, "expected >= 1")
        self.dim, self.block_size, self.p_norm, self.chunk_size = dim, block_size, float(p_norm), chunk_size
        self.num_blocks = dim // block_size
        K = block_size
        hidden_dim = dim * K if hidden_dim is None else hidden_dim
        check_positive_int(name, "hidden_dim", hidden_dim)
        self.block_mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, dim * K))
        self.value_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.h_init = nn.Parameter(torch.empty(self.num_blocks, K))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The learned initial state, ``N(0, 1)`` (the MLPs are ``nn.Linear``'s)."""
        self.h_init.copy_(torch.randn(self.h_init.shape, device=self.h_init.device))

    def transitions(self, x: Tensor) -> Tensor:
        """Normalised blocks ``A_t: [B, T, G, K, K]`` (row index first)."""
        A = rearrange(self.block_mlp(x), "b t (g i j) -> b t g i j", g=self.num_blocks, i=self.block_size)
        A = A - A.mean(dim=-2, keepdim=True)
        col_norm = torch.linalg.vector_norm(A, ord=self.p_norm, dim=-2, keepdim=True)  # [B, T, G, 1, K]
        # Tiny floor: an all-zero block would otherwise divide 0 by 0.
        return A / col_norm.amax(dim=-1, keepdim=True).clamp_min(1e-12)

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        A = self.transitions(x)
        v = rearrange(self.value_mlp(x), "b t (g k) -> b t g k", g=self.num_blocks)
        h0 = self.init_state(x.shape[0], dtype=x.dtype)["h"] if state is None else state["h"].to(x.dtype)
        if self.mode == "reference":
            h, last = block_scan_reference(A, v, h0)
        elif x.shape[1] == 1:
            last = block_scan_recurrent(A[:, 0], v[:, 0], h0)
            h = last[:, None]
        else:
            h, last = block_scan_chunk(A, v, h0, chunk_size=self.chunk_size)
        return rearrange(h, "b t g k -> b t (g k)"), {"h": last}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"h": repeat(self.h_init, "g k -> b g k", b=batch_size).to(**self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return self.dim
