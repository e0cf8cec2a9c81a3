"""``Model(stem, backbone, head)``: one composition for every modality.

The stem turns a task's inputs into tokens ``[B, T, D]``, the backbone mixes them, the head reads
them out. A named model (``lm``, ``image_classifier``, ``tabular``, ``forecaster``) is an argument
dict for :func:`compose` (see :mod:`mixerlab.models.builders`): which stem, which head, which
mixing; the task supplies the sizes of its inputs and outputs (``Task.model_io()``), and each of
them goes to the stem or the head whose builder takes it.

Shapes: ``pred, state = model(inputs)``; ``pred`` is the head's output (``[B, T, V]`` logits for
the LM, ``[B, num_classes]``, ``[B]`` or ``[B, horizon, C]``); ``state`` is the backbone's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.layers.spec import Spec, build, split_spec
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.backbone import Backbone
from mixerlab.models.heads import LMHead
from mixerlab.models.stems import Stem, TokenEmbedding
from mixerlab.registry import HEADS, STEMS


class Model(nn.Module):
    """A stem, a backbone of residual blocks and a head; ``forward(inputs) -> (pred, state)``."""

    def __init__(self, stem: Stem, backbone: Backbone, head: nn.Module, *, tie_weights: bool = False) -> None:
        super().__init__()
        self.stem, self.backbone, self.head = stem, backbone, head
        if tie_weights:
            check(
                isinstance(stem, TokenEmbedding) and isinstance(head, LMHead),
                "model",
                "tie_embeddings",
                tie_weights,
                "tying needs the token stem and the lm head",
            )
            self.head.weight = self.stem.weight
        check(
            not isinstance(head, LMHead) or backbone.mixing == "causal",
            "model",
            "mixing",
            backbone.mixing,
            "the lm head predicts the next token, so its backbone must be causal",
        )
        # Language models saved before the stem existed named the embedding "embed.weight".
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    def forward(
        self, inputs: Any, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        h, context = self.stem(inputs)
        h, state = self.backbone(h, state=state, mask=mask)
        return self.head(h, self.stem, context), state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return self.backbone.init_state(batch_size, device=device, dtype=dtype)

    def state_size(self, seq_len: int) -> int:
        """Scalars per example in the state after ``seq_len`` tokens (of the backbone's sequence)."""
        return self.backbone.state_size(seq_len)

    @property
    def vocab_size(self) -> int:
        check(isinstance(self.stem, TokenEmbedding), "model", "vocab_size", None, "only token stems have one")
        return self.stem.vocab_size

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

        ``temperature=0`` is greedy decoding. Returns ``[B, T + max_new_tokens]``. Only a model with
        the ``lm`` head and causal mixing generates.
        """
        check(
            isinstance(self.head, LMHead),
            "generate",
            "head",
            type(self.head).__name__,
            "generation needs the lm head",
        )
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


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    old = prefix + "embed.weight"
    if old in state_dict and prefix + "stem.weight" not in state_dict:
        state_dict[prefix + "stem.weight"] = state_dict.pop(old)


def _takes(registry, spec: Spec) -> set[str]:
    name, _ = split_spec(spec, registry.kind)
    return set(registry.entry(name).parameters())


def compose(
    *,
    stem: Spec,
    head: Spec,
    dim: int = 64,
    depth: int = 2,
    mixer: Spec | list[Spec] = "attention",
    channel_mixer: Spec | list[Spec] = "swiglu",
    norm: Spec = "rmsnorm",
    mixing: Spec = "causal",
    tie_embeddings: bool = False,
    **io: Any,
) -> Model:
    """Build ``Model(stem, backbone, head)``; each task size in ``io`` goes to the stem or head taking it.

    A size neither takes is an error naming it, so a language-model field never leaks silently
    into an image model (and the reverse).
    """
    stem_takes, head_takes = _takes(STEMS, stem), _takes(HEADS, head)
    for key, value in io.items():
        if key not in stem_takes and key not in head_takes:
            raise ConfigError(
                "model",
                key,
                value,
                f"neither the stem {split_spec(stem, 'stem')[0]!r} nor the head "
                f"{split_spec(head, 'head')[0]!r} takes it",
            )
    # Backbone first, then stem and head: the order the language model always drew its weights in.
    stem_io = {k: v for k, v in io.items() if k in stem_takes}
    with torch.device("meta"):  # the stem's grid and prefix tokens, without drawing weights
        probe = build(STEMS, stem, dim=dim, **stem_io)
    grid, prefix = probe.grid, probe.num_prefix_tokens
    backbone = Backbone(
        dim=dim,
        depth=depth,
        mixer=mixer,
        channel_mixer=channel_mixer,
        norm=norm,
        mixing=mixing,
        grid=grid,
        num_prefix_tokens=prefix,
    )
    built_stem = build(STEMS, stem, dim=dim, **stem_io)
    head_io = {k: v for k, v in io.items() if k in head_takes}
    if "num_tokens" in head_takes and "num_tokens" not in head_io:
        head_io["num_tokens"] = built_stem.num_tokens()
    built_head = build(HEADS, head, dim=dim, **head_io)
    return Model(built_stem, backbone, built_head, tie_weights=tie_embeddings)


def tokens_per_example(model: nn.Module, inputs: Any) -> int:
    """Tokens per example that ``model``'s backbone mixes: its stem's fixed count (patches,
    features, series patches), else the length of token inputs ``[B, T]``, else 1."""
    stem = getattr(model, "stem", None)
    fixed = stem.num_tokens() if stem is not None and hasattr(stem, "num_tokens") else None
    if fixed is not None:
        return fixed
    return inputs.shape[1] if isinstance(inputs, Tensor) and inputs.dim() >= 2 else 1
