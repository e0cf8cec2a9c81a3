"""Peer implementations of the same operators, measured beside mixerlab's in ``mixerlab speed``.

Each peer is wrapped into a whole layer with the same projections as a mixerlab mixer of the same
size (``[B, T, D] -> [B, T, D]``), so that the ratio compares like with like. Peers come from
packages that run on a CPU without GPU compilers: torch itself, Hugging Face ``transformers``
(its pure-PyTorch Mamba/Mamba2 paths), and the reference files of ``flash-linear-attention``
(``fla``), which import without Triton only when loaded by file path (``fla.ops`` itself imports
every Triton kernel). An fla reference is wrapped by :class:`_FlaLayer` (q, k, v and output
projections) with one :class:`_OpInputs` per op family, which owns the projections of what the op
takes beyond q, k, v (gates, decays, slots, Householder directions, ...). A peer whose package is
missing raises ``ImportError`` and is reported as not installed. ``kind`` says whether the peer is
a per-step Python loop ("loop"), a chunked form ("chunked"), a quadratic form ("parallel") or a
fused kernel ("fused"); ``tests/bench/test_peers.py`` checks which peers compute exactly our
operator.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
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
    # fla/ops ships in fla-core (mixerlab's `fla` extra); flash-linear-attention depends on it.
    for dist_name in ("fla-core", "flash-linear-attention"):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        path = dist.locate_file(f"fla/ops/{subpackage}/{filename}.py")
        if Path(str(path)).is_file():
            break
    else:
        raise ImportError("fla-core (flash-linear-attention's ops) is not installed")
    name = f"_mixerlab_peer_fla_{subpackage}_{filename}".replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _OpInputs(nn.Module):
    """What an fla op takes beyond ``q, k, v: [B, T, H, K]``, built from the layer input ``x: [B, T, D]``.

    This base passes ``q, k, v`` through and adds nothing. Each op family's subclass owns the
    projections of its gates (so they are trained and timed with the peer) and may transform
    ``q, k, v`` as that family's layers do (e.g. L2-normalised keys for the delta rule).
    ``kv_copies`` keys and values per token feed ops that write several times per token
    (DeltaProduct's Householder steps), laid out ``[B, T * kv_copies, H, K]`` token-major.
    """

    kv_copies = 1

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads

    def forward(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        return q, k, v, {}

    def _per_head(self, dim: int) -> nn.Linear:
        """A scalar per head and token, ``[B, T, H]`` after the projection."""
        return nn.Linear(dim, self.num_heads, bias=True)


def _l2(*tensors: Tensor) -> tuple[Tensor, ...]:
    return tuple(F.normalize(t, dim=-1) for t in tensors)


def _heads(t: Tensor, num_heads: int) -> Tensor:
    return rearrange(t, "b t (h k) -> b t h k", h=num_heads)


class _GLAInputs(_OpInputs):
    """GLA's decay per key channel ``gk = logsigmoid(.) / 16`` (the paper's normaliser), ``[B, T, H, K]``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.gk_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x, q, k, v):
        return q, k, v, {"gk": _heads(F.logsigmoid(self.gk_proj(x)) / 16, self.num_heads)}


class _DeltaInputs(_OpInputs):
    """The delta rule's L2-normalised ``q, k`` and write strength ``beta = sigmoid(.)``, ``[B, T, H]``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.beta_proj = self._per_head(dim)

    def forward(self, x, q, k, v):
        q, k = _l2(q, k)
        return q, k, v, {"beta": torch.sigmoid(self.beta_proj(x))}


class _GatedDeltaInputs(_DeltaInputs):
    """The delta rule's inputs plus a scalar log decay per head ``g = logsigmoid(.)``, ``[B, T, H]``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.g_proj = self._per_head(dim)

    def forward(self, x, q, k, v):
        q, k, v, extra = super().forward(x, q, k, v)
        return q, k, v, {"g": F.logsigmoid(self.g_proj(x)), **extra}


class _KDAInputs(_DeltaInputs):
    """Kimi delta attention: the delta rule's inputs plus a log decay per key channel ``[B, T, H, K]``.

    fla's chunked reference exponentiates the decay differences before masking them, so the decay
    is kept as mild as GLA's (``logsigmoid(.) / 16``) to keep those factors finite.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.g_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x, q, k, v):
        q, k, v, extra = super().forward(x, q, k, v)
        return q, k, v, {"g": _heads(F.logsigmoid(self.g_proj(x)) / 16, self.num_heads), **extra}


class _DeltaProductInputs(_GatedDeltaInputs):
    """Gated DeltaProduct: two Householder writes per token, ``beta = 2 sigmoid(.)`` per write
    (negative eigenvalues, as ``gated_deltaproduct``'s default), one decay per token."""

    kv_copies = 2

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.beta_proj = nn.Linear(dim, self.kv_copies * num_heads, bias=True)

    def forward(self, x, q, k, v):
        q, k = _l2(q, k)
        beta = rearrange(2 * torch.sigmoid(self.beta_proj(x)), "b t (n h) -> b (t n) h", n=self.kv_copies)
        g = F.logsigmoid(self.g_proj(x))
        return q, k, v, {"g": g, "beta": beta, "scale": self.head_dim**-0.5}


class _CombaInputs(_GatedDeltaInputs):
    """Comba: the gated delta rule's inputs plus the read key ``p = sigmoid(c) k`` (``c`` per head)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.inner_decay = nn.Parameter(torch.ones(num_heads))

    def forward(self, x, q, k, v):
        q, k, v, extra = super().forward(x, q, k, v)
        return q, k, v, {"p": torch.sigmoid(self.inner_decay)[:, None] * k, **extra}


class _ForgetGateInputs(_OpInputs):
    """Forgetting attention's log forget gate per head ``g = logsigmoid(.)``, ``[B, T, H]``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.g_proj = self._per_head(dim)

    def forward(self, x, q, k, v):
        return q, k, v, {"g": F.logsigmoid(self.g_proj(x))}


class _PaTHInputs(_OpInputs):
    """PaTH: Householder directions ``w = L2norm(SiLU(.))`` ``[B, T, H, K]``, ``beta = 2 sigmoid(.)``,
    and no forget gate (fla's op takes FoX's ``g``; zeros leave plain PaTH)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.w_proj = nn.Linear(dim, dim, bias=False)
        self.beta_proj = self._per_head(dim)

    def forward(self, x, q, k, v):
        w = F.normalize(F.silu(_heads(self.w_proj(x), self.num_heads)), dim=-1)
        beta = 2 * torch.sigmoid(self.beta_proj(x))
        return q, k, v, {"w": w, "beta": beta, "g": torch.zeros_like(beta), "scale": self.head_dim**-0.5}


class _MesaInputs(_GatedDeltaInputs):
    """MesaNet: L2-normalised ``q, k``, decay and input gate per head, and the ridge term
    ``lamb = softplus(l) + 0.25`` per head and key channel (the ``mesanet`` layer's lower bound)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        # softplus(0.5413) = 0.75, so lamb starts at 1 like the layer's ``lambda_init``
        self.lamb = nn.Parameter(torch.full((num_heads, dim // num_heads), 0.5413))

    def forward(self, x, q, k, v):
        q, k, v, extra = super().forward(x, q, k, v)
        return q, k, v, {"lamb": F.softplus(self.lamb) + 0.25, **extra}


class _DeltaFormerInputs(_OpInputs):
    """DeltaFormer's write strength per head ``beta = sigmoid(.)``, ``[B, T, H]``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.beta_proj = nn.Linear(dim, num_heads, bias=False)

    def forward(self, x, q, k, v):
        return q, k, v, {"beta": torch.sigmoid(self.beta_proj(x))}


class _GSAInputs(_OpInputs):
    """Gated slot attention: Swish ``q, k``, forget gates ``log alpha = logsigmoid(.) / 8`` over
    64 slots per head (the paper's defaults, as the ``gsa`` layer's) and slot writes ``1 - alpha``."""

    num_slots, temperature = 64, 8.0

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.forget_proj = nn.Linear(dim, num_heads * self.num_slots, bias=True)

    def forward(self, x, q, k, v):
        log_alpha = _heads(F.logsigmoid(self.forget_proj(x)) / self.temperature, self.num_heads)
        return F.silu(q), F.silu(k), v, {"s": 1 - log_alpha.exp(), "g": log_alpha}


class _RWKV6Inputs(_OpInputs):
    """RWKV-6's data-dependent log decay per channel ``w = -exp(w0 + .)`` ``[B, T, H, K]`` and its
    bonus ``u: [H, K]`` for the current token (``w0 = -2``: a decay of about 0.87 per step)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.w_proj = nn.Linear(dim, dim, bias=True)
        nn.init.constant_(self.w_proj.bias, -2.0)
        self.bonus = nn.Parameter(torch.zeros(num_heads, dim // num_heads))

    def forward(self, x, q, k, v):
        w = -torch.exp(_heads(self.w_proj(x), self.num_heads))
        return q, k, v, {"w": w, "u": self.bonus}


class _RWKV7Inputs(_OpInputs):
    """RWKV-7 as fla's diagonal-plus-low-rank (DPLR) delta rule: removal key ``kappa = L2norm(k)``,
    in-context learning rate ``a = sigmoid(.)`` per channel, the transition
    ``diag(w) - kappa (a * kappa)^T`` (fla's ``alpha = -kappa``, ``beta = a * kappa``) and the decay
    ``log w = -0.6065 sigmoid(.)`` (RWKV-7's range, ``w`` in ``(0.545, 1)``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.a_proj = nn.Linear(dim, dim, bias=True)
        self.w_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x, q, k, v):
        kappa = F.normalize(k, dim=-1)
        a = torch.sigmoid(_heads(self.a_proj(x), self.num_heads))
        log_w = -0.6065 * torch.sigmoid(_heads(self.w_proj(x), self.num_heads))
        return q, k, v, {"alpha": -kappa, "beta": a * kappa, "gk": log_w}


class _TTTLinearInputs(_OpInputs):
    """TTT-linear: the inner model's initial weights ``W0: [H, K, K]``, ``b0``, its LayerNorm
    (``w``, ``b``) and the per-token inner learning rate ``eta = sigmoid(.) / K`` (``base_lr`` 1),
    as in the ``ttt_linear`` layer."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        H, K = num_heads, dim // num_heads
        self.lr_proj = self._per_head(dim)
        self.w0 = nn.Parameter(0.02 * torch.randn(H, K, K))
        self.b0 = nn.Parameter(torch.zeros(H, 1, K))
        self.ln_weight = nn.Parameter(torch.ones(H, K))
        self.ln_bias = nn.Parameter(torch.zeros(H, K))

    def forward(self, x, q, k, v):
        eta = rearrange(torch.sigmoid(self.lr_proj(x)) / self.head_dim, "b t h -> b t h 1")
        batch = x.shape[0]
        extra = {
            "w": self.ln_weight,
            "b": self.ln_bias,
            "eta": eta,
            "initial_state": self.w0.expand(batch, *self.w0.shape),
            "initial_state_bias": self.b0.expand(batch, *self.b0.shape),
        }
        # fla scales the query by its own ``scale`` in place; it must not be a view of ``qkv``
        return q.clone(), k, v, extra


class _FlaLayer(nn.Module):
    """Linear q, k, v -> an fla reference op (+ the inputs its ``_OpInputs`` builds) -> output
    Linear, at head_dim = dim / H. ``multiple``: the op needs lengths that are a multiple of it
    (a chunk length); a shorter last chunk is zero-padded at the end, which a causal op cannot
    see from the real positions, and cut off after."""

    def __init__(
        self, dim: int, num_heads: int, op: Callable[..., Tensor], inputs: _OpInputs, multiple: int = 1
    ) -> None:
        super().__init__()
        self.h, self.op, self.inputs, self.multiple = num_heads, op, inputs, multiple
        self.qkv = nn.Linear(dim, (1 + 2 * inputs.kv_copies) * dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        seq_len, dim = x.shape[1], x.shape[2]
        x = F.pad(x, (0, 0, 0, -seq_len % self.multiple))
        q, kv = self.qkv(x).split([dim, 2 * self.inputs.kv_copies * dim], dim=-1)
        q = _heads(q, self.h)
        k, v = rearrange(kv, "b t (two n h k) -> two b (t n) h k", two=2, n=self.inputs.kv_copies, h=self.h)
        q, k, v, extra = self.inputs(x, q, k, v)
        o = self.op(q, k, v, **extra)
        return self.o(rearrange(o[:, :seq_len], "b t h v -> b t (h v)"))


def _fla(
    sub: str,
    fn: str,
    inputs: type[_OpInputs] = _OpInputs,
    *,
    filename: str = "naive",
    layout: str = "bthd",
    multiple: int = 1,
    **kwargs: Any,
) -> Callable[[int, int], nn.Module]:
    """A peer of fla's ``fla/ops/<sub>/<filename>.py:<fn>`` with the extra inputs ``inputs`` builds.
    ``layout="bhtd"``: the op takes heads before time (every input of three or more dimensions is
    transposed in, the output back); ``kwargs`` are fixed options of the op."""

    def build(dim: int, num_heads: int) -> nn.Module:
        func = getattr(_fla_file(sub, filename), fn)

        def op(q: Tensor, k: Tensor, v: Tensor, **extra: Tensor) -> Tensor:
            if layout == "bhtd":
                q, k, v = (rearrange(t, "b t h ... -> b h t ...") for t in (q, k, v))
                extra = {
                    n: rearrange(t, "b t h ... -> b h t ...") if torch.is_tensor(t) and t.dim() >= 3 else t
                    for n, t in extra.items()
                }
            out = func(q, k, v, **extra, **kwargs)
            # several references compute in float32 and return it whatever came in
            out = (out[0] if isinstance(out, tuple) else out).to(q.dtype)
            return rearrange(out, "b h t v -> b t h v") if layout == "bhtd" else out

        return _FlaLayer(dim, num_heads, op, inputs(dim, num_heads), multiple)

    return build


class _LogLinearMamba2Layer(nn.Module):
    """Mamba-2's widths (``expand`` 2, heads of 64 channels, one group of 64-wide ``B``/``C``, the
    ``log_linear`` layer's defaults) around fla's quadratic ``naive_log_linear_attn``: ``q = C``,
    ``k = B``, ``v = dt x``, log decay ``dt A``, level weights ``softplus(.)`` per head, ``D`` skip.
    No short convolution and no gated norm: it does a little less than the ``log_linear`` layer."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        expand: int = 2,
        head_dim: int = 64,
        state_dim: int = 64,
        num_levels: int = 24,
    ) -> None:
        super().__init__()
        inner = expand * dim
        self.h = inner // head_dim
        self.op = _fla_file("log_linear_attn").naive_log_linear_attn
        self.x_proj = nn.Linear(dim, inner, bias=False)
        self.bc_proj = nn.Linear(dim, 2 * state_dim, bias=False)
        self.dt_proj = nn.Linear(dim, self.h, bias=True)
        self.level_proj = nn.Linear(dim, self.h * num_levels, bias=True)
        self.A_log = nn.Parameter(torch.zeros(self.h))
        self.D = nn.Parameter(torch.ones(self.h))
        self.o_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        u = _heads(self.x_proj(x), self.h)  # [B, T, H, P]
        b, c = rearrange(self.bc_proj(x), "b t (two g n) -> two b t g n", two=2, g=1)  # [B, T, 1, N]
        dt = F.softplus(self.dt_proj(x))  # [B, T, H]
        levels = _heads(F.softplus(self.level_proj(x)), self.h)  # [B, T, H, L]
        y = self.op(c, b, u * dt[..., None], -torch.exp(self.A_log) * dt, levels)
        y = y + self.D[:, None] * u
        return self.o_proj(rearrange(y, "b t h p -> b t (h p)"))


_HIDE_FOR_TRANSFORMERS = ("fla", "mamba_ssm", "causal_conv1d", "xlstm")


def _import_transformers(module_path: str) -> tuple[ModuleType, ModuleType]:
    """``transformers`` and one of its modeling modules, with its optional GPU kernels hidden."""
    # transformers routes to optional GPU kernels whenever they import; hide them so that its
    # own pure-PyTorch path runs, as on a machine without those packages.
    for name in _HIDE_FOR_TRANSFORMERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    try:
        import transformers
    except ImportError as exc:
        raise ImportError("transformers is not installed") from exc
    try:
        return transformers, importlib.import_module(module_path)
    except ImportError as exc:
        raise ImportError(f"this transformers ({transformers.__version__}) has no {module_path}") from exc


def _config_values(config: dict[str, Any], dim: int, num_heads: int) -> dict[str, Any]:
    return {k: (v(dim, num_heads) if callable(v) else v) for k, v in config.items()}


def _transformers_mixer(
    config_name: str, model_name: str, module_path: str, layer: str, **config
) -> Callable:
    """Build a 1-layer transformers model (so its own weight init runs) and take its mixer module."""

    def build(dim: int, num_heads: int) -> nn.Module:
        transformers, module = _import_transformers(module_path)
        values = _config_values(config, dim, num_heads)
        cfg = getattr(transformers, config_name)(hidden_size=dim, num_hidden_layers=1, **values)
        model = getattr(transformers, model_name)(cfg)
        cls = getattr(module, layer)
        return next(m for m in model.modules() if type(m) is cls)

    return build


def _transformers_layer(
    config_name: str,
    module_path: str,
    layer: str,
    pretrained: str,
    wrap: Callable[[nn.Module, Any, ModuleType], nn.Module] | None = None,
    **config,
) -> Callable:
    """Build one transformers mixer layer alone (the whole model of a mixture-of-experts family
    would build its experts too) and run its model's weight init on it; ``wrap`` adapts its call."""

    def build(dim: int, num_heads: int) -> nn.Module:
        transformers, module = _import_transformers(module_path)
        values = _config_values(config, dim, num_heads)
        cfg = getattr(transformers, config_name)(hidden_size=dim, num_hidden_layers=1, **values)
        cfg._attn_implementation = "sdpa"  # attention layers: torch SDPA, as mixerlab's own
        mixer = getattr(module, layer)(cfg, layer_idx=0)
        mixer.apply(getattr(module, pretrained)(cfg)._init_weights)
        return wrap(mixer, cfg, module) if wrap is not None else mixer

    return build


class _DeepseekMLALayer(nn.Module):
    """transformers' DeepSeek-V2 attention (MLA) with the rotary table its model would pass in."""

    def __init__(self, attention: nn.Module, config: Any, module: ModuleType) -> None:
        super().__init__()
        self.attention = attention
        self.rotary = module.DeepseekV2RotaryEmbedding(config)

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device=x.device)[None]
        return self.attention(x, attention_mask=None, position_embeddings=self.rotary(x, positions))[0]


PEERS: dict[str, list[Peer]] = {
    "attention": [
        Peer("torch SDPA layer", "fused", _SDPALayer, _plain_call, same_settings={"rotary_base": None})
    ],
    "lstm": [Peer("torch nn.LSTM + Linear", "fused", _LSTMLayer, _plain_call)],
    "linear_attention": [
        Peer(
            "fla naive_chunk_linear_attn",
            "chunked",
            _fla("linear_attn", "naive_chunk_linear_attn", multiple=64),
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
        Peer("fla naive_recurrent_gla", "loop", _fla("gla", "naive_recurrent_gla", _GLAInputs), _plain_call)
    ],
    "deltanet": [
        Peer(
            "fla delta_rule_chunkwise",
            "chunked",
            _fla("delta_rule", "delta_rule_chunkwise", _DeltaInputs, layout="bhtd", multiple=32),
            _plain_call,
            same_settings={"conv_size": None},
        )
    ],
    "gated_deltanet": [
        Peer(
            "fla naive_chunk_gated_delta_rule",
            "chunked",
            _fla("gated_delta_rule", "naive_chunk_gated_delta_rule", _GatedDeltaInputs),
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
    "rwkv6": [
        Peer(
            # fla's chunked reference (chunk_naive.py) writes its chunk states in place and has no
            # backward; the per-step one is RWKV's own recurrence, unscaled like the layer's
            "fla naive_recurrent_rwkv6",
            "loop",
            _fla(
                "rwkv6",
                "naive_recurrent_rwkv6",
                _RWKV6Inputs,
                filename="recurrent_naive",
                layout="bhtd",
                scale=1.0,
            ),
            _plain_call,
        )
    ],
    "rwkv7": [
        Peer(
            "fla dplr_chunkwise",
            "chunked",
            _fla(
                "generalized_delta_rule/dplr",
                "dplr_chunkwise",
                _RWKV7Inputs,
                layout="bhtd",
                multiple=32,
                output_final_state=False,
            ),
            _plain_call,
        )
    ],
    "gsa": [
        Peer("fla naive_recurrent_gsa", "loop", _fla("gsa", "naive_recurrent_gsa", _GSAInputs), _plain_call)
    ],
    "kda": [
        Peer(
            "fla naive_chunk_kda",
            "chunked",
            _fla("kda", "naive_chunk_kda", _KDAInputs, multiple=64),
            _plain_call,
            # the output gate and its norm stay: the layer has no option without them
            same_settings={"conv_size": None},
        ),
        Peer(
            "transformers KimiLinearDeltaAttention (torch chunk)",
            "chunked",
            _transformers_layer(
                "KimiLinearConfig",
                "transformers.models.kimi_linear.modeling_kimi_linear",
                "KimiLinearDeltaAttention",
                "KimiLinearPreTrainedModel",
                linear_num_heads=lambda d, h: h,
                linear_head_dim=lambda d, h: d // h,
                linear_conv_kernel_dim=4,
            ),
            _plain_call,
        ),
    ],
    "gated_deltaproduct": [
        Peer(
            "fla naive_recurrent_gated_delta_product",
            "loop",
            _fla(
                "gated_delta_product",
                "naive_recurrent_gated_delta_product",
                _DeltaProductInputs,
                num_householder=2,
            ),
            _plain_call,
            same_settings={"conv_size": None, "expand": 1},
        )
    ],
    "comba": [
        Peer(
            "fla naive_chunk_comba",
            "chunked",
            _fla("comba", "naive_chunk_comba", _CombaInputs),
            _plain_call,
            same_settings={"conv_size": None, "expand": 1},
        )
    ],
    "fox": [
        Peer(
            "fla naive_forgetting_attn",
            "parallel",
            _fla("forgetting_attn", "naive_forgetting_attn", _ForgetGateInputs),
            _plain_call,
        )
    ],
    "path": [
        Peer(
            "fla naive_path_attn",
            "parallel",
            _fla("path_attn", "naive_path_attn", _PaTHInputs),
            _plain_call,
            same_settings={"conv_size": None},
        )
    ],
    "log_linear": [Peer("fla naive_log_linear_attn", "parallel", _LogLinearMamba2Layer, _plain_call)],
    "mesanet": [
        Peer(
            "fla naive_mesa_net_exact",
            "loop",
            _fla("mesa_net", "naive_mesa_net_exact", _MesaInputs),
            _plain_call,
            same_settings={"conv_size": None},
        )
    ],
    "stick_breaking": [
        Peer(
            "fla naive_stickbreaking_attn",
            "parallel",
            _fla("stickbreaking_attn", "naive_stickbreaking_attn", attend_current=True),
            _plain_call,
        )
    ],
    "deltaformer": [
        Peer(
            "fla naive_deltaformer_attn",
            "loop",
            _fla("deltaformer", "naive_deltaformer_attn", _DeltaFormerInputs),
            _plain_call,
            same_settings={"rotary_base": None},
        )
    ],
    "ttt_linear": [
        Peer(
            "fla chunk_ttt_linear_ref",
            "chunked",
            _fla("ttt", "chunk_ttt_linear_ref", _TTTLinearInputs, mini_batch_size=16),
            _plain_call,
        )
    ],
    "mla": [
        Peer(
            "transformers DeepseekV2Attention (MLA, SDPA)",
            "fused",
            _transformers_layer(
                "DeepseekV2Config",
                "transformers.models.deepseek_v2.modeling_deepseek_v2",
                "DeepseekV2Attention",
                "DeepseekV2PreTrainedModel",
                wrap=_DeepseekMLALayer,
                num_attention_heads=lambda d, h: h,
                num_key_value_heads=lambda d, h: h,
                q_lora_rank=None,
                kv_lora_rank=lambda d, h: 4 * (d // h),
                qk_nope_head_dim=lambda d, h: d // h,
                qk_rope_head_dim=lambda d, h: max(2, d // h // 2),
                v_head_dim=lambda d, h: d // h,
            ),
            _plain_call,
            # the defaults: named so that ours is timed right after the peer (see ``fox``)
            same_settings={"bias": False},
        )
    ],
}


def peers_for(mixer: str) -> list[Peer]:
    return PEERS.get(mixer, [])
