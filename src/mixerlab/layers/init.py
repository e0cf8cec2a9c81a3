"""Building on a device and in a dtype, and (re)initialising parameters after the fact.

A large model is built without memory on the ``meta`` device, sharded, given real (uninitialised)
storage and only then initialised::

    model = mixerlab.create_model("lm", vocab_size=256, dim=1024, depth=24, device="meta")
    # ... shard (e.g. FSDP2 ``fully_shard``) ...
    materialize(model, "cuda")           # = to_empty (keeping tied weights) + reset_all

The convention every block of mixerlab follows:

- ``reset_parameters()`` (re)initialises the parameters and buffers the module owns itself
  (``recurse=False``), including buffers computed from its options (rotary or scan-order tables,
  offsets, knot grids), and re-applies what the module imposes on its children's initialisation
  (a zero-initialised gate, a special bias, a rescaled projection). It never redoes a child's own
  default: the child's ``reset_parameters`` does that.
- :func:`reset_all` calls ``reset_parameters`` on every submodule that has one, children before
  parents, so a parent's choice for a child wins. This is ``nn.Linear``'s and ``nn.LayerNorm``'s
  convention, so PyTorch's own layers inside a block need nothing special.
- A constructor calls its ``reset_parameters`` where its parameters were drawn before (usually at
  the end), so a seeded construction gives the same weights as it always did.

With the same seed, :func:`reset_all` reproduces a normal construction bit for bit when the
module's own random draws come after those of its children (the order ``reset_all`` draws in);
otherwise it gives the same distributions in another draw order. The tests in
``tests/layers/test_device_and_init.py`` name which registered blocks are bit-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from mixerlab.errors import ConfigError

__all__ = ["build_on", "materialize", "reset_all"]

M = TypeVar("M", bound=nn.Module)


def build_on(
    build: Callable[[], M],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    owner: str = "create",
) -> M:
    """Run ``build()`` with its tensors created on ``device``, then cast floating ones to ``dtype``.

    The device is PyTorch's default-device context, so every factory call inside the constructor
    allocates there directly; on ``"meta"`` nothing is allocated and no random number is drawn.
    The dtype is applied after construction (``module.to(dtype)``, free on ``meta``) rather than by
    changing the default dtype: initialisations are computed in float32 as they were designed
    (an inverse softplus of a step size in bfloat16 is far off), constants a constructor creates
    with an explicit dtype still end in ``dtype``, and no process-wide setting is touched. Building
    directly on a real device in a dtype other than float32 therefore holds a float32 copy for a
    moment; build on ``"meta"`` and :func:`materialize` to avoid it.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(owner, "dtype", dtype, "expected a floating-point torch.dtype, e.g. torch.float64")
    try:
        where = torch.device(device) if device is not None else None
    except (RuntimeError, TypeError) as error:
        raise ConfigError(owner, "device", device, f"expected a torch device ({error})") from None
    with torch.device(where) if where is not None else contextlib.nullcontext():
        module = build()
    if dtype is not None:
        module.to(dtype=dtype)
    return module


@torch.no_grad()
def reset_all(module: nn.Module) -> nn.Module:
    """Call ``reset_parameters()`` on every submodule of ``module`` that has one, children first.

    Each module is reset once, even when it is shared by several parents (WideNet's MoE). A
    parameter shared by several modules keeps the initialisation of the first of them in module
    order: a language model's output head tied to its embedding keeps the embedding's init, as a
    normal construction does (the head's own reset still runs, and draws, for its other tensors).
    Returns ``module``.
    """
    seen: set[int] = set()
    initialised: set[int] = set()  # parameters some earlier module has already reset

    def visit(m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        for child in m.children():
            visit(child)
        own = list(m.named_parameters(recurse=False))
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            tied = {name: p.detach().clone() for name, p in own if id(p) in initialised}
            reset()
            for name, value in tied.items():
                getattr(m, name).copy_(value)
        initialised.update(id(p) for _, p in own)

    visit(module)
    return module


def materialize(module: M, device: torch.device | str) -> M:
    """Give a ``meta``-built ``module`` real storage on ``device`` and initialise it.

    ``module.to_empty`` replaces each parameter by a new one, which unties weights shared between
    submodules (a language model's embedding and output head); the ties are restored here before
    :func:`reset_all` runs. Returns ``module``.
    """
    ties: dict[int, list[tuple[nn.Module, str]]] = {}
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            ties.setdefault(id(param), []).append((sub, name))
    module.to_empty(device=device)
    for owners in ties.values():
        first, first_name = owners[0]
        for sub, name in owners[1:]:
            setattr(sub, name, getattr(first, first_name))
    return reset_all(module)
