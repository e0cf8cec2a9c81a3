"""End-to-End Memory Networks (``memnet``): soft attention of a controller over embedded memories.

Shapes: ``inputs = {"story": [B, S, W], "question": [B, W]}`` int64 (``0`` pads a word or a
whole sentence) -> ``logits: [B, num_classes]``. A bare token tensor ``[B, T]`` is the paper's
language-model form (Section 5): each token is a one-word memory and the query is the constant
vector ``0.1``. Attention weights: ``[B, hops, S]``.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_choice, check_positive_int
from mixerlab.models.stems import TokenEmbedding
from mixerlab.registry import MODELS

TYINGS = ("adjacent", "layerwise")


def position_encoding(width: int, dim: int, *, device=None, dtype=None) -> Tensor:
    """The paper's position encoding ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)``, 1-based: ``[W, dim]``."""
    j = torch.arange(1, width + 1, device=device, dtype=dtype)[:, None] / width
    k = torch.arange(1, dim + 1, device=device, dtype=dtype)[None, :] / dim
    return (1 - j) - k * (1 - 2 * j)


class EndToEndMemoryNetwork(nn.Module):
    """End-To-End Memory Networks (arXiv:1503.08895), the bag-of-words model of Section 2.

    Each sentence ``x_i`` becomes a memory ``m_i = sum_j l_j * A x_ij + T_A(i)`` and an output
    ``c_i = sum_j l_j * C x_ij + T_C(i)`` (position encoding ``l``, temporal encoding ``T`` indexed
    from the most recent sentence). Each of ``hops`` rounds attends ``p = softmax(u^T m)``, reads
    ``o = sum_i p_i c_i`` and updates the controller ``u <- u + o``; the answer is ``W u``.

    ``tying``: ``"adjacent"`` (``A^{k+1} = C^k``, ``B = A^1``: ``hops + 1`` embeddings) or
    ``"layerwise"`` (one ``A``, one ``C`` for all hops, a separate ``B`` and ``u <- H u + o``).
    The answer map ``W`` is its own linear layer, since the answers (``num_classes``) need not be
    the word vocabulary (the paper ties ``W^T = C^K`` when they are). ``max_memories`` bounds
    the temporal encoding: a story may hold at most that many sentences.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        dim: int = 32,
        hops: int = 3,
        tying: str = "adjacent",
        max_memories: int = 50,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("num_classes", num_classes),
            ("dim", dim),
            ("hops", hops),
            ("max_memories", max_memories),
        ):
            check_positive_int("memnet", name, value)
        check_choice("memnet", "tying", tying, TYINGS)
        self.dim, self.hops, self.tying, self.max_memories = dim, hops, tying, max_memories
        # Adjacent: embeddings[k] is A^{k+1} and C^k (embeddings[0] is A^1 = B). Layer-wise: A, C, B.
        count = hops + 1 if tying == "adjacent" else 3
        self.embeddings = nn.ModuleList(TokenEmbedding(vocab_size, dim) for _ in range(count))
        self.controller = nn.Linear(dim, dim, bias=False) if tying == "layerwise" else None
        self.answer = nn.Linear(dim, num_classes, bias=False)
        self.temporal = nn.Parameter(torch.empty(count, max_memories, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.temporal, std=0.1)

    @property
    def stem(self) -> TokenEmbedding:
        """The question's (and first hop's memory) word embedding ``B``."""
        return self.embeddings[0] if self.tying == "adjacent" else self.embeddings[2]

    def _embed(self, index: int, story: Tensor, padded: bool = True) -> Tensor:
        """``story: [B, S, W]`` -> memories ``[B, S, D]`` of embedding ``index`` (PE + temporal)."""
        S, W = story.shape[1], story.shape[2]
        words = self.embeddings[index](rearrange(story, "b s w -> b (s w)"))[0]
        words = rearrange(words, "b (s w) d -> b s w d", s=S)
        if padded:  # token 0 pads a sentence; a language model's tokens are all words
            words = words * (story != 0)[..., None]
        enc = position_encoding(W, self.dim, device=words.device, dtype=words.dtype)
        # Temporal encoding indexed from the most recent sentence (the paper's reverse order).
        return (words * enc).sum(2) + self.temporal[index, :S].flip(0)

    def _hop_embeddings(self, hop: int) -> tuple[int, int]:
        return (hop, hop + 1) if self.tying == "adjacent" else (0, 1)

    def read(self, inputs: Any) -> tuple[Tensor, Tensor]:
        """``(logits [B, num_classes], attention [B, hops, S])`` for ``inputs`` (see the module doc)."""
        if isinstance(inputs, Tensor):
            check(
                inputs.dim() == 2 and not inputs.is_floating_point(),
                "memnet",
                "inputs",
                tuple(inputs.shape),
                "expected int64 tokens [B, T] or {'story': [B, S, W], 'question': [B, W]}",
            )
            story, question = inputs[..., None], None
        else:
            check(
                isinstance(inputs, dict) and set(inputs) == {"story", "question"},
                "memnet",
                "inputs",
                sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__,
                "expected the keys ['question', 'story']",
            )
            story, question = inputs["story"], inputs["question"]
            check(story.dim() == 3, "memnet", "inputs['story']", tuple(story.shape), "expected [B, S, W]")
        S = story.shape[1]
        check(self.max_memories >= S, "memnet", "sentences", S, f"at most max_memories={self.max_memories}")
        dtype = self.temporal.dtype
        if question is None:
            u = torch.full((story.shape[0], self.dim), 0.1, device=story.device, dtype=dtype)
        else:
            u = self._embed(0 if self.tying == "adjacent" else 2, question[:, None])[:, 0]
            u = u - self.temporal[0 if self.tying == "adjacent" else 2, 0]  # a question has no time
        padded = question is not None
        # [B, S]: an all-padding sentence is no memory
        present = (story != 0).any(-1) if padded else torch.ones_like(story[..., 0], dtype=torch.bool)
        weights = []
        for hop in range(self.hops):
            a, c = self._hop_embeddings(hop)
            m, out = self._embed(a, story, padded), self._embed(c, story, padded)
            scores = torch.einsum("bsd,bd->bs", m, u).masked_fill(~present, float("-inf"))
            p = torch.softmax(scores, dim=-1)
            o = torch.einsum("bs,bsd->bd", p, out)
            u = (self.controller(u) if self.controller is not None else u) + o
            weights.append(p)
        return self.answer(u), torch.stack(weights, dim=1)

    def forward(self, inputs: Any, *, state: Any = None, mask: Tensor | None = None) -> tuple[Tensor, None]:
        check(state is None and mask is None, "memnet", "state", "given", "a memory network keeps no state")
        return self.read(inputs)[0], None

    def state_size(self, seq_len: int) -> int:
        """Scalars per example held in memory for ``seq_len`` sentences: ``m`` and ``c`` per embedding."""
        return seq_len * self.dim * len(self.embeddings)


@MODELS.register(
    "memnet",
    paper="End-To-End Memory Networks",
    arxiv="1503.08895",
    summary="End-to-end memory network: sentence memories, multi-hop soft attention, answer classifier.",
    test_kwargs={"vocab_size": 11, "num_classes": 4, "dim": 8, "depth": 2, "max_memories": 16},
    meta={"kinds": ("classify",)},
)
def memnet(
    vocab_size: int,
    num_classes: int,
    dim: int = 32,
    depth: int = 3,
    tying: str = "adjacent",
    max_memories: int = 50,
    mixer: Any = None,
    channel_mixer: Any = None,
    norm: Any = None,
) -> EndToEndMemoryNetwork:
    """End-To-End Memory Networks (arXiv:1503.08895) with ``depth`` hops.

    A memory network has no token mixer, channel mixer or norm; the trainer passes its run's
    blocks to every builder, so only its defaults (``attention``: each hop *is* soft attention,
    ``swiglu``, ``rmsnorm``) or None are accepted, and anything else is an error, never unused.
    """
    for field, value, default in (
        ("mixer", mixer, "attention"),
        ("channel_mixer", channel_mixer, "swiglu"),
        ("norm", norm, "rmsnorm"),
    ):
        if value not in (None, default):
            raise ConfigError("memnet", field, value, "a memory network has none (leave it out)")
    return EndToEndMemoryNetwork(
        vocab_size, num_classes, dim=dim, hops=depth, tying=tying, max_memories=max_memories
    )
