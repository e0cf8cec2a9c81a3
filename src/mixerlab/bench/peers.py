"""Peer implementations of the same operators, measured beside mixerlab's in ``mixerlab speed``.

Each peer is wrapped into a whole layer with the same projections as a mixerlab mixer of the same
size (``[B, T, D] -> [B, T, D]``), so that the ratio compares like with like. Peers come from
packages that run on a CPU without GPU compilers: torch itself, Hugging Face ``transformers``
(its pure-PyTorch Mamba/Mamba2 paths), and the reference files of ``flash-linear-attention``
(``fla``), which import without Triton only when loaded by file path (``fla.ops`` itself imports
every Triton kernel). A peer whose package is missing raises ``ImportError`` and is reported as
not installed. ``kind`` says whether the peer is a per-step Python loop ("loop"), a chunked form
("chunked"), a quadratic form ("parallel") or a fused kernel ("fused").
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn.functional import scaled_dot_product_attention


@dataclass(frozen=True)
class Peer:
    """A peer layer; ``same_settings`` are the mixer options under which mixerlab's layer computes
    what the peer computes (e.g. no rotary for plain SDPA), measured as a second, like-for-like
    ratio beside the one at the mixer's defaults."""

    name: str
    kind: str
    build: Callable[[int, int], nn.Module]
    call: Callable[[nn.Module, Tensor], Tensor]
    same_settings: dict[str, Any] = field(default_factory=dict)


def _plain_call(module: nn.Module, x: Tensor) -> Tensor:
    return module(x)


class _SDPALayer(nn.Module):
    """Plain SDPA with the same q / kv / o projections as mixerlab's ``attention`` (no rotary)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.h = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        q = rearrange(self.q(x), "b t (h k) -> b h t k", h=self.h)
        k, v = rearrange(self.kv(x), "b t (two h k) -> two b h t k", two=2, h=self.h)
        o = scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(rearrange(o, "b h t k -> b t (h k)"))


class _LSTMLayer(nn.Module):
    """``nn.LSTM`` and the output projection the ``lstm`` mixer has: without it the peer did 13%
    fewer FLOPs and the ratio read as a gap of the recurrence (0.86x at L=256)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.o(self.lstm(x)[0])


def _fla_file(subpackage: str, filename: str = "naive") -> ModuleType:
    """Load ``fla/ops/<subpackage>/<filename>.py`` by path (``import fla.ops`` needs Triton)."""
    try:
        dist = importlib.metadata.distribution("flash-linear-attention")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImportError("flash-linear-attention is not installed") from exc
    path = dist.locate_file(f"fla/ops/{subpackage}/{filename}.py")
    spec = importlib.util.spec_from_file_location(f"_mixerlab_peer_fla_{subpackage}_{filename}", str(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FlaLayer(nn.Module):
    """Linear q, k, v (+ gates) -> an fla reference op -> output Linear, at head_dim = dim / H."""

    def __init__(self, dim: int, num_heads: int, op: Callable[..., Tensor], gates: tuple[str, ...]) -> None:
        super().__init__()
        self.h, self.op, self.gates = num_heads, op, gates
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        if "beta" in gates or "g" in gates:
            self.g_proj = nn.Linear(dim, num_heads, bias=True)
        if "gk" in gates:
            self.gk_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (three h k) -> three b t h k", three=3, h=self.h)
        extra: dict[str, Tensor] = {}
        if "beta" in self.gates:
            extra["beta"] = torch.sigmoid(self.g_proj(x))  # [B, T, H]
            k = torch.nn.functional.normalize(k, dim=-1)
            q = torch.nn.functional.normalize(q, dim=-1)
        if "g" in self.gates:
            extra["g"] = torch.nn.functional.logsigmoid(self.g_proj(x))
        if "gk" in self.gates:
            extra["gk"] = rearrange(
                torch.nn.functional.logsigmoid(self.gk_proj(x)) / 16, "b t (h k) -> b t h k", h=self.h
            )
        o = self.op(q, k, v, **extra)
        return self.o(rearrange(o, "b t h v -> b t (h v)"))


def _fla(
    sub: str, fn: str, gates: tuple[str, ...] = (), layout: str = "bthd", **kwargs
) -> Callable[[int, int], nn.Module]:
    def build(dim: int, num_heads: int) -> nn.Module:
        func = getattr(_fla_file(sub), fn)

        def op(q: Tensor, k: Tensor, v: Tensor, **extra: Tensor) -> Tensor:
            if layout == "bhtd":
                q, k, v = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
                extra = {n: rearrange(t, "b t h -> b h t") for n, t in extra.items()}
            out = func(q, k, v, **extra, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            return rearrange(out, "b h t v -> b t h v") if layout == "bhtd" else out

        return _FlaLayer(dim, num_heads, op, gates)

    return build


_HIDE_FOR_TRANSFORMERS = ("fla", "mamba_ssm", "causal_conv1d", "xlstm")


def _transformers_mixer(
    config_name: str, model_name: str, module_path: str, layer: str, **config
) -> Callable:
    """Build a 1-layer transformers model (so its own weight init runs) and take its mixer module."""

    def build(dim: int, num_heads: int) -> nn.Module:
        # transformers routes to optional GPU kernels whenever they import; hide them so that its
        # own pure-PyTorch path runs, as on a machine without those packages.
        for name in _HIDE_FOR_TRANSFORMERS:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]
        try:
            import transformers
        except ImportError as exc:
            raise ImportError("transformers is not installed") from exc
        values = {k: (v(dim, num_heads) if callable(v) else v) for k, v in config.items()}
        cfg = getattr(transformers, config_name)(hidden_size=dim, num_hidden_layers=1, **values)
        model = getattr(transformers, model_name)(cfg)
        cls = getattr(importlib.import_module(module_path), layer)
        return next(m for m in model.modules() if type(m) is cls)

    return build


PEERS: dict[str, list[Peer]] = {
    "attention": [
        Peer("torch SDPA layer", "fused", _SDPALayer, _plain_call, same_settings={"rotary_base": None})
    ],
    "lstm": [Peer("torch nn.LSTM + Linear", "fused", _LSTMLayer, _plain_call)],
    "linear_attention": [
        Peer(
            "fla naive_chunk_linear_attn",
            "chunked",
            _fla("linear_attn", "naive_chunk_linear_attn"),
            _plain_call,
            same_settings={"feature_map": "identity", "normalize": False},
        )
    ],
    "retention": [
        Peer(
            "fla naive_retention",
            "parallel",
            _fla("retention", "naive_retention", layout="bhtd"),
            _plain_call,
            same_settings={"expand_v": 1},
        )
    ],
    "gla": [
        Peer(
            "fla naive_recurrent_gla", "loop", _fla("gla", "naive_recurrent_gla", gates=("gk",)), _plain_call
        )
    ],
    "deltanet": [
        Peer(
            "fla delta_rule_chunkwise",
            "chunked",
            _fla("delta_rule", "delta_rule_chunkwise", gates=("beta",), layout="bhtd"),
            _plain_call,
            same_settings={"conv_size": None},
        )
    ],
    "gated_deltanet": [
        Peer(
            "fla naive_chunk_gated_delta_rule",
            "chunked",
            _fla("gated_delta_rule", "naive_chunk_gated_delta_rule", gates=("g", "beta")),
            _plain_call,
            # the output gate and its norm stay: the layer has no option without them
            same_settings={"conv_size": None, "expand": 1},
        )
    ],
    "mamba": [
        Peer(
            "transformers MambaMixer (torch path)",
            "loop",
            _transformers_mixer(
                "MambaConfig",
                "MambaModel",
                "transformers.models.mamba.modeling_mamba",
                "MambaMixer",
                state_size=16,
                expand=2,
                conv_kernel=4,
            ),
            _plain_call,
        )
    ],
    "mamba2": [
        Peer(
            "transformers Mamba2Mixer (torch SSD)",
            "chunked",
            _transformers_mixer(
                "Mamba2Config",
                "Mamba2Model",
                "transformers.models.mamba2.modeling_mamba2",
                "Mamba2Mixer",
                state_size=64,
                expand=2,
                n_groups=1,
                conv_kernel=4,
                num_heads=lambda d, h: h,
                head_dim=lambda d, h: 2 * d // h,
            ),
            _plain_call,
        )
    ],
}


def peers_for(mixer: str) -> list[Peer]:
    return PEERS.get(mixer, [])
