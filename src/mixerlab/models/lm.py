"""Causal language model: token embedding -> backbone -> tied output head.

Shapes: ``tokens: [B, T]`` (int64) -> ``logits: [B, T, V]``. The state is the backbone's, so
prefill followed by one-token steps gives the logits of one full forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.spec import Spec
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.backbone import Backbone
from mixerlab.registry import MODELS


class CausalLM(nn.Module):
    """Decoder-only language model over any backbone of registered blocks."""

    def __init__(self, vocab_size: int, backbone: Backbone, tie_embeddings: bool = True) -> None:
        super().__init__()
        check_positive_int("lm", "vocab_size", vocab_size)
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, backbone.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.backbone = backbone
        self.head = nn.Linear(backbone.dim, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, tokens: Tensor, *, state: State | None = None) -> tuple[Tensor, State]:
        check(tokens.dim() == 2, "lm", "tokens.shape", tuple(tokens.shape), "expected [B, T]")
        h, state = self.backbone(self.embed(tokens), state=state)
        return self.head(h), state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return self.backbone.init_state(batch_size, device=device, dtype=dtype)

    def state_size(self, seq_len: int) -> int:
        return self.backbone.state_size(seq_len)

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``prompt: [B, T]`` by ``max_new_tokens`` tokens, one step at a time from the state.

        ``temperature=0`` is greedy decoding. Returns ``[B, T + max_new_tokens]``.
        """
        check_positive_int("generate", "max_new_tokens", max_new_tokens)
        check(temperature >= 0, "generate", "temperature", temperature, "expected >= 0")
        logits, state = self(prompt)
        out = [prompt]
        for _ in range(max_new_tokens):
            last = logits[:, -1]
            if temperature == 0:
                nxt = last.argmax(-1, keepdim=True)
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            out.append(nxt)
            logits, state = self(nxt, state=state)
        return torch.cat(out, dim=1)


@MODELS.register(
    "lm",
    summary="Causal language model: embedding, a (hybrid) stack of blocks, tied output head.",
    test_kwargs={"vocab_size": 11, "dim": 16, "depth": 2},
)
def lm(
    vocab_size: int,
    dim: int = 64,
    depth: int = 2,
    mixer: Spec | list[Spec] = "attention",
    channel_mixer: Spec | list[Spec] = "swiglu",
    norm: Spec = "rmsnorm",
    tie_embeddings: bool = True,
) -> CausalLM:
    """Causal language model over ``depth`` blocks of ``mixer`` (a name, a spec dict, or a per-layer list)."""
    backbone = Backbone(dim=dim, depth=depth, mixer=mixer, channel_mixer=channel_mixer, norm=norm)
    return CausalLM(vocab_size, backbone, tie_embeddings=tie_embeddings)
