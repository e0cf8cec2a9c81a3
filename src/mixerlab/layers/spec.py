"""Block specifications: a registry name, or a dict ``{"name": ..., **options}``.

Specs are plain data so that model configs stay serialisable to YAML/JSON and are stored with
every result.
"""

from __future__ import annotations

from typing import Any

from mixerlab.errors import ConfigError
from mixerlab.registry import Registry

Spec = str | dict[str, Any]


def split_spec(spec: Spec, kind: str) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        options = dict(spec)
        return options.pop("name"), options
    raise ConfigError(kind, "spec", spec, 'expected a name or a dict {"name": ..., **options}')


def build(registry: Registry, spec: Spec, **defaults: Any) -> Any:
    """Create a block from ``spec``; options in the spec override ``defaults`` (e.g. ``dim``)."""
    name, options = split_spec(spec, registry.kind)
    return registry.create(name, **{**defaults, **options})
