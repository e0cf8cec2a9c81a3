"""Parameter sharing across layers (e.g. WideNet's one MoE for every block).

A layer asks :func:`shared` for a module under a key; inside one :func:`sharing_scope` the same key
returns the same module. :class:`~mixerlab.models.backbone.Backbone` opens a scope while it builds
its blocks, so layers of one model share and two models never do. Outside any scope the table is
process-wide and held weakly (a module is freed with the last layer that uses it).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import nn

_SCOPE: ContextVar[weakref.WeakValueDictionary | None] = ContextVar("mixerlab_sharing", default=None)
_GLOBAL: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@contextmanager
def sharing_scope() -> Iterator[None]:
    """Layers built inside one scope share modules by key; two scopes never share."""
    token = _SCOPE.set(weakref.WeakValueDictionary())
    try:
        yield
    finally:
        _SCOPE.reset(token)


def shared(key: Hashable, build: Callable[[], nn.Module]) -> nn.Module:
    """The module stored under ``key`` in the current scope, built by ``build()`` the first time."""
    scope = _SCOPE.get()
    table = _GLOBAL if scope is None else scope
    module = table.get(key)
    if module is None:
        module = build()
        table[key] = module
    return module
