"""What the table models of their own layers share (AutoInt, ExcelFormer, FinalMLP, DIN).

These models are not a stack of registered blocks: each paper defines its own layers. The trainer
still hands every builder ``mixer``, ``channel_mixer`` and ``norm``; they must be ``"none"``, so a
spec meant for a block stack is an error rather than silently unused (as ``scaling_mlp``'s mixer).
The read-out is one linear map to ``num_classes`` logits ``[B, C]`` or to a value ``[B]``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mixerlab.errors import ConfigError, check_positive_int


def check_own_layers(owner: str, **specs: Any) -> None:
    """Every block spec the trainer passes (mixer, channel_mixer, norm) must be ``"none"``."""
    for field, value in specs.items():
        if value != "none":
            raise ConfigError(
                owner,
                field,
                value,
                f"'none': {owner} builds its own layers from its paper (set {field}: none)",
            )


def output_size(owner: str, num_classes: int | None, num_outputs: int | None) -> int:
    """Width of the read-out: ``num_classes`` logits (classify) or ``num_outputs`` values (regress)."""
    if (num_classes is None) == (num_outputs is None):
        raise ConfigError(
            owner,
            "num_classes",
            num_classes,
            f"give exactly one of num_classes (classify) or num_outputs (regress); num_outputs={num_outputs}",
        )
    size = num_classes if num_classes is not None else num_outputs
    check_positive_int(owner, "num_classes" if num_classes is not None else "num_outputs", size)
    return size


class TableModel(nn.Module):
    """Base of the table models: ``forward(inputs) -> (pred, None)``; they carry no state."""

    #: ``[B, C]`` logits for classify, ``[B]`` for a single regression output.
    squeeze: bool = False

    def read(self, y: Tensor) -> Tensor:
        return y.squeeze(-1) if self.squeeze else y

    def state_size(self, seq_len: int) -> int:
        return 0

    def init_state(self, batch_size: int, **kwargs: Any) -> None:
        return None
