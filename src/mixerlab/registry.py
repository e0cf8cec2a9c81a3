"""One generic registry type and its instances, one per kind of block.

A registry maps a short lowercase name from the literature (``gla``, ``swiglu``) to a builder,
with the paper it comes from and a tiny configuration that the test suite uses. Creating an
entry validates the keyword arguments against the builder's signature, so an unknown or
misspelled option is an error rather than silently ignored.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mixerlab.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered block: its builder and what people need to know about it."""

    name: str
    builder: Callable[..., T]
    paper: str = ""
    arxiv: str = ""
    summary: str = ""
    # Small keyword arguments for the registry-wide tests (tiny dims, small chunks).
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Free-form facts used by docs and reports, e.g. {"state": "O(H K V)", "time": "O(T)"}.
    meta: Mapping[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, inspect.Parameter]:
        target = self.builder.__init__ if inspect.isclass(self.builder) else self.builder
        params = dict(inspect.signature(target).parameters)
        params.pop("self", None)
        return params


class Registry(Generic[T]):
    """Name -> builder map for one kind of block (token mixers, norms, models, tasks, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        paper: str = "",
        arxiv: str = "",
        summary: str = "",
        test_kwargs: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class or factory under ``name``."""

        def decorate(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name].builder is not builder:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            fullgraph = getattr(builder, "compile_fullgraph", True)
            if not isinstance(fullgraph, bool):
                owner = f"{self.kind} {name!r}"
                raise ConfigError(owner, "compile_fullgraph", fullgraph, "expected True or False")
            self._entries[name] = Entry(
                name=name,
                builder=builder,
                paper=paper,
                arxiv=arxiv,
                summary=summary or _first_line(builder),
                test_kwargs=dict(test_kwargs or {}),
                meta=dict(meta or {}),
            )
            return builder

        return decorate

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise ConfigError(self.kind, "name", name, f"registered names are {self.list()}")
        return self._entries[name]

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Build ``name`` with ``kwargs``, rejecting keywords the builder does not take."""
        entry = self.entry(name)
        params = entry.parameters()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if not takes_any:
            allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
            for key in kwargs:
                if key not in allowed:
                    raise ConfigError(
                        f"{self.kind} {name!r}", key, kwargs[key], f"allowed options are {allowed}"
                    )
            missing = [
                n
                for n, p in params.items()
                if p.default is inspect.Parameter.empty
                and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                and n not in kwargs
            ]
            if missing:
                raise ConfigError(f"{self.kind} {name!r}", missing[0], None, "this option is required")
        return entry.builder(**kwargs)

    def list(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


TOKEN_MIXERS: Registry[Any] = Registry("token mixer")
CHANNEL_MIXERS: Registry[Any] = Registry("channel mixer")
NORMS: Registry[Any] = Registry("norm")
MODELS: Registry[Any] = Registry("model")
TASKS: Registry[Any] = Registry("task")
STEMS: Registry[Any] = Registry("stem")
HEADS: Registry[Any] = Registry("head")
OBJECTIVES: Registry[Any] = Registry("objective")
METHODS: Registry[Any] = Registry("training method")
TRANSFORMS: Registry[Any] = Registry("transform")
# Models of other fields (gradient-boosted trees, statistical forecasters) compared beside ours.
BASELINES: Registry[Any] = Registry("baseline")
# Experiment trackers a run logs to (TensorBoard, MLflow): mixerlab.train.loggers.
LOGGERS: Registry[Any] = Registry("logger")
