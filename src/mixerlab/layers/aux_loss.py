"""The one mechanism for extra training losses (MoE load balancing, router z-loss, ...).

A layer that has an auxiliary loss calls :func:`report_aux_loss` in its forward pass. A training
loop wraps the forward pass in :func:`collect_aux_losses` and adds the total to its loss::

    with collect_aux_losses() as aux:
        logits, _ = model(tokens)
    loss = task_loss + aux.total()

Outside a ``collect_aux_losses`` block the reports are dropped on purpose: inference and
evaluation do not need them. The losses arrive already weighted by the layer's own coefficient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor

_ACTIVE: ContextVar[AuxLosses | None] = ContextVar("mixerlab_aux_losses", default=None)


@dataclass
class AuxLosses:
    """Auxiliary losses reported during one forward pass, by name."""

    items: list[tuple[str, Tensor]] = field(default_factory=list)

    def total(self) -> Tensor:
        if not self.items:
            return torch.zeros(())
        return torch.stack([v.reshape(()) for _, v in self.items]).sum()

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, value in self.items:
            out[name] = out.get(name, 0.0) + float(value.detach())
        return out


def report_aux_loss(name: str, value: Tensor) -> None:
    """Record an (already weighted) auxiliary loss if a collector is active."""
    active = _ACTIVE.get()
    if active is not None:
        active.items.append((name, value))


@contextlib.contextmanager
def collect_aux_losses() -> Iterator[AuxLosses]:
    losses = AuxLosses()
    token = _ACTIVE.set(losses)
    try:
        yield losses
    finally:
        _ACTIVE.reset(token)
