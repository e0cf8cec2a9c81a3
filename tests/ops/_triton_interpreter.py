"""Running fla's Triton kernels on a CPU, in Triton's interpreter (``TRITON_INTERPRET=1``).

Imported only by the child processes that the interpreter tests start (``python <test file>``,
whose directory is then on ``sys.path``); a test module cannot import it under pytest's
``--import-mode=importlib``. Three gaps between the interpreter and a GPU are bridged here, never in
the library: the autotuner would time each of its configs on a GPU (the first one is kept), some
kernels call ``.to`` on a ``range`` loop index, which the interpreter leaves a Python ``int``, and
some masks reach its loads as integers where a compiled kernel's are booleans.
"""

from __future__ import annotations

import builtins
import json
import sys
from collections.abc import Callable, Sequence

import torch

from conftest import relative_error  # the GPU check's measure (this directory is on sys.path)


class _Index(int):
    """A loop index that takes ``.to(dtype)`` as a compiled kernel's index does, and keeps it
    through integer arithmetic (``(i_t * BT).to(tl.int64)``)."""

    def to(self, *args, **kwargs) -> _Index:
        return self


def _keeps_index(name: str) -> None:
    def operator(self: _Index, other: object) -> object:
        result = getattr(int, name)(self, other)
        return _Index(result) if type(result) is int else result

    setattr(_Index, name, operator)


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__floordiv__", "__mod__"):
    _keeps_index(_name)


def _indices(*args: int):
    return map(_Index, builtins.range(*args))


def bridge_gaps() -> None:
    """Keep one autotuner config, take masks as booleans, and give ``range`` loop indices ``.to`` in
    fla's modules; to be called before anything imports ``fla.ops``."""
    import triton.runtime.autotuner as autotuner

    init = autotuner.Autotuner.__init__

    def first_config(self, fn, arg_names, configs, *args, **kwargs):
        init(self, fn, arg_names, configs[:1], *args, **kwargs)

    autotuner.Autotuner.__init__ = first_config
    # a mask that mixes a block with a scalar condition can reach the interpreter's loads and
    # stores as integers, which it rejects; a compiled kernel's mask is always int1
    import numpy as np
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    load, store = builder.create_masked_load, builder.create_masked_store

    def as_bool(mask):
        return interpreter.TensorHandle(np.asarray(mask.data, dtype=bool), mask.dtype)

    builder.create_masked_load = lambda self, ptrs, mask, *a: load(self, ptrs, as_bool(mask), *a)
    builder.create_masked_store = lambda self, ptrs, value, mask, *a: store(
        self, ptrs, value, as_bool(mask), *a
    )
    # after the patch: the kernels' autotuners are built when their modules are imported
    import fla.ops  # noqa: F401  (imports every kernel module, so each gets the patched range)

    for name, module in list(sys.modules.items()):
        if name == "fla" or name.startswith("fla."):
            module.range = _indices


def worst_error(
    fast: Callable[..., object],
    reference: Callable[..., object],
    inputs: Sequence[torch.Tensor | None],
    *,
    seed: int = 0,
) -> float:
    """The worst relative (norm) error of ``fast`` on ``inputs`` cast to float32 (complex64)
    against ``reference`` on the float64 ``inputs``: every output, then the gradient of every input
    that is a floating tensor, under one random weighting of the outputs. ``None`` inputs pass as
    is. (Not 16-bit: the interpreter's bfloat16 arithmetic is wrong.)"""
    g = torch.Generator().manual_seed(seed)

    def leaves(single: bool) -> list[torch.Tensor | None]:
        out = []
        for t in inputs:
            if t is None or (not t.is_floating_point() and not t.is_complex()):
                out.append(t)
                continue
            if single:
                t = t.to(torch.complex64 if t.is_complex() else torch.float32)
            out.append(t.detach().clone().requires_grad_())
        return out

    low, high = leaves(True), leaves(False)
    outs, refs = fast(*low), reference(*high)
    outs, refs = (o if isinstance(o, tuple) else (o,) for o in (outs, refs))
    weights = [torch.randn(r.shape, generator=g, dtype=torch.float64) for r in refs]
    if refs[0].is_complex():
        weights = [torch.complex(w, torch.randn(w.shape, generator=g, dtype=torch.float64)) for w in weights]

    def loss(values, ws):  # a real-linear functional, the same for both runs
        return sum((v.to(w.dtype) * w.conj()).real.sum() for v, w in zip(values, ws))

    def grads(values, ins):
        wanted = [t for t in ins if isinstance(t, torch.Tensor) and t.requires_grad]
        return torch.autograd.grad(loss(values, weights), wanted, allow_unused=True)

    d_low, d_high = grads(outs, low), grads(refs, high)
    pairs = list(zip(outs, refs)) + [(a, b) for a, b in zip(d_low, d_high) if b is not None]
    return max(relative_error(a, b) for a, b in pairs)


def main(cases: Callable[[], dict[str, tuple]]) -> None:
    """The child process: ``cases()`` maps names to ``(fast, reference, inputs)``; prints one JSON
    line, each name's worst error (or the error it raised, as a string)."""
    bridge_gaps()
    worst: dict[str, float | str] = {}
    for name, (fast, reference, inputs) in cases().items():
        try:
            worst[name] = worst_error(fast, reference, inputs)
        except Exception as error:  # reported per case, so one failure does not hide the rest
            worst[name] = f"{type(error).__name__}: {error}"[:500]
    print(json.dumps(worst))
