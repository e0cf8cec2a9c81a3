"""Shared pieces of the training-method tests: tiny models, batches, and a probe of backpropagation.

``backward_crosses_blocks`` scales the gradient that flows backward through every block after the
first by 1000 without changing any forward value (so every loss stays the same): if the first
block's (or the stem's) gradient changes, backpropagation crossed a block boundary.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from mixerlab.train.config import ModelConfig
from mixerlab.train.evaluate import objective_of
from mixerlab.train.methods import create_method, unwrap
from mixerlab.train.trainer import build_model


class _Task:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.objective = "cross_entropy"

    def model_io(self) -> dict[str, Any]:
        if self.kind == "classify":
            return {"image_size": 8, "in_chans": 1, "num_classes": 5}
        return {"vocab_size": 11}


def tiny_model(kind: str = "classify", depth: int = 3, dim: int = 16, **options: Any) -> nn.Module:
    """An image classifier on 8x8 images (5 classes) or a language model (11 tokens)."""
    torch.manual_seed(0)
    name = "image_classifier" if kind == "classify" else "lm"
    mixer = {"name": "attention", "num_heads": 2}
    return build_model(
        ModelConfig(name=name, dim=dim, depth=depth, mixer=mixer, options=options), _Task(kind)
    )


def tiny_batch(kind: str = "classify", n: int = 12, seq_len: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if kind == "classify":
        return {"inputs": torch.rand(n, 1, 8, 8, generator=g), "targets": torch.randint(5, (n,), generator=g)}
    tokens = torch.randint(11, (n, seq_len + 1), generator=g)
    targets = tokens[:, 1:].clone()
    targets[:, :2] = -100
    return {"inputs": tokens[:, :-1], "targets": targets}


def objective() -> Any:
    return objective_of(_Task("classify"))


def gradients(method, model: nn.Module, batch: dict[str, Any], step: int = 0) -> dict[str, torch.Tensor]:
    """Every parameter's gradient after one loss + backward through the method's hooks."""
    model.zero_grad(set_to_none=True)
    loss, _ = method.loss(model, batch, objective(), step)
    method.backward(loss, model, step)
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


class GradScale(torch.autograd.Function):
    """Identity forward; the gradient times ``scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


@contextlib.contextmanager
def scaled_backward(blocks: list[nn.Module], scale: float = 1000.0):
    """Scale every gradient that enters ``blocks`` through their outputs; forward values unchanged."""

    def hook(module, args, out):
        return (GradScale.apply(out[0], scale), *out[1:])

    handles = [b.register_forward_hook(hook) for b in blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def first_block_gradients(name: str, options: dict[str, Any], kind: str = "classify", *, scale_later: bool):
    """The stem's and first block's gradients under method ``name`` (later blocks' backward scaled)."""
    torch.manual_seed(0)
    method = create_method(name, options)
    model = method.wrap(tiny_model(kind))
    blocks = list(unwrap(model).backbone.blocks)
    watched = {id(p) for p in blocks[0].parameters()} | {id(p) for p in unwrap(model).stem.parameters()}
    names = {k for k, p in model.named_parameters() if id(p) in watched}
    context = scaled_backward(blocks[1:]) if scale_later else contextlib.nullcontext()
    with context:
        grads = gradients(method, model, tiny_batch(kind))
    return {k: v for k, v in grads.items() if k in names}


def backward_crosses_blocks(name: str, options: dict[str, Any] | None = None, kind: str = "classify") -> bool:
    plain = first_block_gradients(name, options or {}, kind, scale_later=False)
    scaled = first_block_gradients(name, options or {}, kind, scale_later=True)
    assert plain and plain.keys() == scaled.keys()
    return any(not torch.allclose(plain[k], scaled[k], rtol=1e-5, atol=1e-8) for k in plain)


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def test_the_probe_sees_backpropagation_cross_blocks():
    # The probe itself: plain backpropagation does cross blocks, in both kinds of model.
    assert backward_crosses_blocks("standard")
    assert backward_crosses_blocks("standard", kind="next_token")
