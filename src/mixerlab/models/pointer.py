"""Pointer Networks (``pointer``): a decoder whose every output is a distribution over input positions.

Shapes: ``points: [B, n, C]`` float (or ``[B, n]`` int64 tokens with ``vocab_size``) ->
``logits: [B, steps, n (+1)]``; the last dimension is the input length, plus one for the end
token when ``end_token`` is set (index ``n`` means "stop"). ``steps`` is ``n (+1)``, or the
length of the teacher-forcing sequence when one is given.

How "outputs are indices into the input" meets the testbed: the task is of kind ``classify``
with one target per output step (an input index, ``-100`` where nothing is scored), and the
``cross_entropy`` objective reads ``logits: [B, steps, n]`` against ``targets: [B, steps]`` as it
reads a language model's (its metric: the accuracy of the pointers over the scored steps).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.spec import Spec
from mixerlab.models.backbone import Backbone
from mixerlab.models.stems import TokenEmbedding
from mixerlab.registry import MODELS

# A finite "never": a visited position keeps a finite logit, so losses and metrics stay finite.
VISITED = -1e4


class PointerNetwork(nn.Module):
    """Pointer Networks (arXiv:1506.03134): attention used as the output, ``p = softmax(u)``.

    The encoder is a :class:`~mixerlab.models.backbone.Backbone` of any registered mixer with
    ``mixing="noncausal"`` (the input is a set: every element sees every other), giving ``e_j``;
    the decoder is a causal backbone of the same blocks run step by step from its state, whose
    input at step ``i`` is ``e`` at the position pointed to at step ``i-1`` (a learned start
    vector at step 0), plus the mean of ``e`` (the paper hands the encoder's final state to the
    decoder). At each step ``u_j = v^T tanh(W1 e_j + W2 d_i)`` scores every input position.

    Without a teacher the decoder feeds back its own greedy pointers (inference, as in the paper);
    with ``{"points": ..., "teacher": [B, steps]}`` it feeds the given indices (teacher forcing,
    how the paper trains). ``mask_visited`` gives positions already pointed to a logit of
    :data:`VISITED` (the end token is never masked): a constraint of the output, not learned.
    """

    def __init__(
        self,
        dim: int = 64,
        depth: int = 2,
        mixer: Spec | list[Spec] = "attention",
        channel_mixer: Spec | list[Spec] = "swiglu",
        norm: Spec = "rmsnorm",
        in_features: int | None = None,
        vocab_size: int | None = None,
        end_token: bool = False,
        mask_visited: bool = True,
    ) -> None:
        super().__init__()
        check(
            (in_features is None) != (vocab_size is None),
            "pointer",
            "in_features",
            in_features,
            "give exactly one of in_features (float points [B, n, C]) and vocab_size (tokens [B, n])",
        )
        check_positive_int("pointer", "dim", dim)
        self.dim, self.end_token, self.mask_visited = dim, end_token, mask_visited
        if vocab_size is not None:
            self.stem: nn.Module = TokenEmbedding(vocab_size, dim)
        else:
            check_positive_int("pointer", "in_features", in_features)
            self.stem = nn.Linear(in_features, dim)
        self.encoder = Backbone(dim, depth, mixer, channel_mixer, norm, mixing="noncausal")
        self.decoder = Backbone(dim, depth, mixer, channel_mixer, norm, mixing="causal")
        self.w_enc = nn.Linear(dim, dim, bias=False)
        self.w_dec = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, 1, bias=False)
        self.start = nn.Parameter(torch.empty(dim))
        self.end = nn.Parameter(torch.empty(dim)) if end_token else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.start, std=0.02)
        if self.end is not None:
            nn.init.normal_(self.end, std=0.02)

    def encode(self, points: Tensor) -> Tensor:
        """``points`` -> encoder states ``e: [B, n (+1), D]`` (the end token's vector last)."""
        if isinstance(self.stem, TokenEmbedding):
            x = self.stem(points)[0]
        else:
            check(
                points.dim() == 3 and points.shape[-1] == self.stem.in_features,
                "pointer",
                "points",
                tuple(points.shape),
                f"expected [B, n, {self.stem.in_features}]",
            )
            x = self.stem(points)
        e, _ = self.encoder(x)
        if self.end is not None:
            e = torch.cat([e, self.end.expand(e.shape[0], 1, self.dim)], dim=1)
        return e

    def _scores(self, keys: Tensor, d: Tensor, visited: Tensor) -> Tensor:
        """``keys: [B, N, D]`` (``W1 e``), ``d: [B, S, D]`` -> ``u: [B, S, N]``."""
        u = self.v(torch.tanh(keys[:, None] + self.w_dec(d)[:, :, None])).squeeze(-1)
        return u.masked_fill(visited, VISITED) if self.mask_visited else u

    def forward(self, inputs: Any, *, state: Any = None, mask: Tensor | None = None) -> tuple[Tensor, None]:
        check(state is None and mask is None, "pointer", "state", "given", "a pointer network keeps no state")
        teacher = None
        if isinstance(inputs, dict):
            check(
                set(inputs) <= {"points", "teacher"} and "points" in inputs,
                "pointer",
                "inputs",
                sorted(inputs),
                "expected the keys 'points' and optionally 'teacher'",
            )
            points, teacher = inputs["points"], inputs.get("teacher")
        else:
            points = inputs
        e = self.encode(points)
        B, N = e.shape[0], e.shape[1]
        n = N - int(self.end_token)
        keys, context = self.w_enc(e), e.mean(1, keepdim=True)
        positions = torch.arange(N, device=e.device)
        if teacher is not None:
            check(
                teacher.shape[0] == B and bool(((teacher >= 0) & (teacher < N)).all()),
                "pointer",
                "teacher",
                tuple(teacher.shape),
                f"expected [B, steps] indices in [0, {N})",
            )
            prev = e.gather(1, teacher[:, :-1, None].expand(-1, -1, self.dim))
            dec_in = torch.cat([self.start.expand(B, 1, self.dim), prev], dim=1) + context
            d, _ = self.decoder(dec_in)
            # Step i has seen the teacher's pointers before it (not the end token: it may repeat).
            chosen = nn.functional.one_hot(teacher, N).bool() & (positions < n)
            visited = (chosen.cumsum(1) - chosen.int()) > 0
            return self._scores(keys, d, visited), None
        steps = N
        visited = torch.zeros(B, 1, N, dtype=torch.bool, device=e.device)
        x = self.start.expand(B, 1, self.dim) + context
        dec_state, logits = None, []
        for _ in range(steps):
            d, dec_state = self.decoder(x, state=dec_state)
            u = self._scores(keys, d, visited)
            logits.append(u)
            pick = u.argmax(-1)  # [B, 1]
            visited = visited | (nn.functional.one_hot(pick, N).bool() & (positions < n))
            x = e.gather(1, pick[..., None].expand(-1, -1, self.dim)) + context
        return torch.cat(logits, dim=1), None

    def state_size(self, seq_len: int) -> int:
        """The decoder's state after ``seq_len`` steps plus the encoder states it points into."""
        return self.decoder.state_size(seq_len) + seq_len * self.dim


@MODELS.register(
    "pointer",
    paper="Pointer Networks",
    arxiv="1506.03134",
    summary="Pointer network: non-causal encoder, causal decoder whose outputs point at input positions.",
    test_kwargs={"vocab_size": 11, "dim": 16, "depth": 1},
    meta={"kinds": ("classify",)},
)
def pointer(
    dim: int = 64,
    depth: int = 2,
    mixer: Spec | list[Spec] = "attention",
    channel_mixer: Spec | list[Spec] = "swiglu",
    norm: Spec = "rmsnorm",
    in_features: int | None = None,
    vocab_size: int | None = None,
    end_token: bool = False,
    mask_visited: bool = True,
) -> PointerNetwork:
    """Pointer Networks (arXiv:1506.03134) over float points (``in_features``) or tokens (``vocab_size``)."""
    return PointerNetwork(
        dim, depth, mixer, channel_mixer, norm, in_features, vocab_size, end_token, mask_visited
    )
