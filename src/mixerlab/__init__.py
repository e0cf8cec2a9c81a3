"""mixerlab: token mixers, channel mixers, norms, models composed from them, and a testbed.

The public API is what this module exports::

    import mixerlab
    mixer = mixerlab.create_token_mixer("gla", dim=64, num_heads=4)
    y, state = mixer(x)                      # x: [B, T, D]
"""

from __future__ import annotations

from typing import Any

import torch

from mixerlab import layers as _layers  # noqa: F401  (registers the blocks)
from mixerlab import models as _models  # noqa: F401  (registers the models)
from mixerlab import tasks as _tasks  # noqa: F401  (registers the tasks)
from mixerlab.errors import ConfigError
from mixerlab.layers.block import Block
from mixerlab.layers.init import build_on
from mixerlab.layers.token_mixers.base import State, TokenMixer, set_mode, state_numel
from mixerlab.models.backbone import Backbone
from mixerlab.models.model import Model, compose
from mixerlab.registry import (
    CHANNEL_MIXERS,
    HEADS,
    METHODS,
    MODELS,
    NORMS,
    OBJECTIVES,
    STEMS,
    TASKS,
    TOKEN_MIXERS,
    TRANSFORMS,
)
from mixerlab.train import methods as _methods  # noqa: F401  (registers the training methods)
from mixerlab.train import objectives as _objectives  # noqa: F401  (registers the objectives)
from mixerlab.train import transforms as _transforms  # noqa: F401  (registers the transforms)

__version__ = "0.1.0"


def create_token_mixer(
    name: str, /, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **kwargs: Any
) -> TokenMixer:
    """Build a registered token mixer, e.g. ``create_token_mixer("gla", dim=64, num_heads=4)``.

    ``device`` and ``dtype`` (every ``create_*`` takes them) say where its parameters are created
    and in which floating dtype; ``device="meta"`` allocates nothing and draws no random number
    (initialise later with :func:`mixerlab.layers.init.materialize`).
    """
    return build_on(lambda: TOKEN_MIXERS.create(name, **kwargs), device=device, dtype=dtype, owner=name)


def list_token_mixers(pattern: str | None = None) -> list[str]:
    """Registered token-mixer names, optionally filtered by a glob ``pattern``."""
    return TOKEN_MIXERS.list(pattern)


def create_channel_mixer(
    name: str, /, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **kwargs: Any
) -> Any:
    return build_on(lambda: CHANNEL_MIXERS.create(name, **kwargs), device=device, dtype=dtype, owner=name)


def list_channel_mixers(pattern: str | None = None) -> list[str]:
    return CHANNEL_MIXERS.list(pattern)


def create_norm(
    name: str, /, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **kwargs: Any
) -> Any:
    return build_on(lambda: NORMS.create(name, **kwargs), device=device, dtype=dtype, owner=name)


def list_norms(pattern: str | None = None) -> list[str]:
    return NORMS.list(pattern)


def create_model(
    name: str, /, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **kwargs: Any
) -> Any:
    """Build a registered model, e.g. ``create_model("lm", mixer="gla", dim=64, depth=2, vocab_size=256)``."""
    return build_on(lambda: MODELS.create(name, **kwargs), device=device, dtype=dtype, owner=name)


def list_models(pattern: str | None = None) -> list[str]:
    return MODELS.list(pattern)


def create_task(name: str, /, **kwargs: Any) -> Any:
    """Build a registered task, e.g. ``create_task("mqar", vocab_size=32, seq_len=32)``."""
    return TASKS.create(name, **kwargs)


def list_tasks(pattern: str | None = None) -> list[str]:
    return TASKS.list(pattern)


def list_stems(pattern: str | None = None) -> list[str]:
    return STEMS.list(pattern)


def list_heads(pattern: str | None = None) -> list[str]:
    return HEADS.list(pattern)


def list_objectives(pattern: str | None = None) -> list[str]:
    return OBJECTIVES.list(pattern)


def list_methods(pattern: str | None = None) -> list[str]:
    return METHODS.list(pattern)


def list_transforms(pattern: str | None = None) -> list[str]:
    return TRANSFORMS.list(pattern)


__all__ = [
    "Backbone",
    "Block",
    "ConfigError",
    "Model",
    "State",
    "TokenMixer",
    "__version__",
    "compose",
    "create_channel_mixer",
    "create_model",
    "create_norm",
    "create_task",
    "create_token_mixer",
    "list_channel_mixers",
    "list_heads",
    "list_methods",
    "list_models",
    "list_norms",
    "list_objectives",
    "list_stems",
    "list_tasks",
    "list_token_mixers",
    "list_transforms",
    "set_mode",
    "state_numel",
]
