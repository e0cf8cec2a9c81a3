"""Quantisation transforms: int8/int4 fake quantisation (PTQ and QAT), FP8, BitNet b1.58, BiPer.

Every one replaces each ``nn.Linear`` (tied weights and the ``skip`` prefixes left alone) by a
:class:`QuantLinear` that holds the same float weight and quantises it on the fly::

    y = act_quant(x) @ weight_quant(W)^T + b

``weight_quant`` is the fake quantiser of the chosen format, with a straight-through estimator
(its gradient is the identity, or BiPer's sine surrogate) so the layer trains; ``act_quant``
quantises the input activations (a calibrated range, an EMA of the range during training, or a
per-token absmax). ``when: after`` is post-training quantisation: activation ranges are
calibrated on the task's training data, then the weights are *frozen* onto their grid (the float
weight is replaced by ``dequantize(codes)``, so later forwards skip the weight quantiser).
``when: before`` is quantisation-aware training: the model trains through the quantisers and
:meth:`~Transform.finalize` freezes it when training ends. A frozen layer's weight packs into
its low-bit codes (:mod:`.storage`): the file holds 8 bits a weight for int8, 4 for int4, 8 for
FP8, 1.6 for ternary and 1 for binary, plus one float scale per channel (or per tensor).

Shapes: ``x: [..., in]``, ``W: [out, in]``; per-channel scales are ``[out, 1]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check, check_choice
from mixerlab.registry import TRANSFORMS
from mixerlab.train.transforms.base import (
    Transform,
    TransformContext,
    batches,
    linear_layers,
    replace_modules,
    size_facts,
)
from mixerlab.train.transforms.storage import FP8 as FP8_DTYPES
from mixerlab.train.transforms.storage import dequantize

GRANULARITY = ("channel", "tensor")
FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}


def ste(x: Tensor, quantised: Tensor) -> Tensor:
    """``quantised`` forward, identity backward (the straight-through estimator, arXiv:1308.3432)."""
    return x + (quantised - x).detach()


def _amax(w: Tensor, per_channel: bool) -> Tensor:
    a = w.detach().abs()
    return a.amax(dim=tuple(range(1, w.dim())), keepdim=True) if per_channel else a.amax().reshape(1, 1)


# -- weight quantisers ---------------------------------------------------------------------------


class WeightQuantizer(nn.Module):
    """A weight format: ``scales(w)``, integer-valued ``codes(w, scale, zero)`` and ``pack``.

    ``scale``/``zero`` buffers hold the frozen layer's scales (filled by :meth:`QuantLinear.freeze`).
    """

    kind = ""

    def __init__(self, out_features: int, per_channel: bool, has_zero: bool = False) -> None:
        super().__init__()
        self.per_channel = per_channel
        rows = out_features if per_channel else 1
        self.register_buffer("scale", torch.ones(rows, 1))
        self.register_buffer("zero", torch.zeros(rows, 1) if has_zero else None)

    def scales(self, w: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def codes(self, w: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        raise NotImplementedError

    def fake(self, w: Tensor) -> Tensor:
        """The quantised weight, differentiable through the straight-through estimator."""
        scale, zero = self.scales(w)
        return ste(w, self.dequant(self.codes(w.detach(), scale, zero), scale, zero, w.shape))

    def dequant(self, codes: Tensor, scale: Tensor, zero: Tensor | None, shape: torch.Size) -> Tensor:
        return dequantize(self.packed(codes, scale, zero, shape))

    def packed(self, codes: Tensor, scale: Tensor, zero: Tensor | None, shape: torch.Size) -> dict[str, Any]:
        return {"kind": self.kind, "codes": codes, "scale": scale, "zero": zero, "shape": list(shape)}


class IntWeight(WeightQuantizer):
    """A uniform grid of ``bits`` bits: symmetric ``[-(2^(b-1)-1), 2^(b-1)-1]`` or affine ``[0, 2^b-1]``."""

    kind = "int"

    def __init__(self, out_features: int, bits: int, per_channel: bool, symmetric: bool) -> None:
        super().__init__(out_features, per_channel, has_zero=not symmetric)
        self.bits, self.symmetric = bits, symmetric
        half = 2 ** (bits - 1) - 1
        self.qmin, self.qmax = (-half, half) if symmetric else (0, 2**bits - 1)

    def scales(self, w: Tensor) -> tuple[Tensor, Tensor | None]:
        w = w.detach()
        if self.symmetric:
            return (_amax(w, self.per_channel) / self.qmax).clamp_min(1e-12), None
        dims = tuple(range(1, w.dim())) if self.per_channel else None
        lo = (w.amin(dim=dims, keepdim=True) if dims else w.amin().reshape(1, 1)).clamp_max(0)
        hi = (w.amax(dim=dims, keepdim=True) if dims else w.amax().reshape(1, 1)).clamp_min(0)
        scale = ((hi - lo) / (self.qmax - self.qmin)).clamp_min(1e-12)
        return scale, (self.qmin - lo / scale).round()

    def codes(self, w: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        q = (w / scale).round() + (zero if zero is not None else 0)
        return q.clamp(self.qmin, self.qmax)

    def packed(self, codes, scale, zero, shape) -> dict[str, Any]:
        return {**super().packed(codes, scale, zero, shape), "bits": self.bits, "qmin": self.qmin}


class FP8Weight(WeightQuantizer):
    """FP8 (arXiv:2209.05433): ``w / s`` as ``float8_e4m3fn`` or ``float8_e5m2``, ``s = amax / max``."""

    kind = "fp8"

    def __init__(self, out_features: int, fmt: str, per_channel: bool) -> None:
        super().__init__(out_features, per_channel)
        self.format = fmt

    def scales(self, w: Tensor) -> tuple[Tensor, None]:
        return (_amax(w, self.per_channel) / FP8_MAX[self.format]).clamp_min(1e-12), None

    def codes(self, w: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        return (w / scale).to(FP8_DTYPES[self.format]).to(w.dtype)

    def packed(self, codes, scale, zero, shape) -> dict[str, Any]:
        return {**super().packed(codes, scale, zero, shape), "format": self.format}


class TernaryWeight(WeightQuantizer):
    """BitNet b1.58: ``W_q = RoundClip(W / gamma, -1, 1) * gamma``, ``gamma = mean |W|`` (per tensor)."""

    kind = "ternary"

    def __init__(self, out_features: int, eps: float = 1e-5) -> None:
        super().__init__(out_features, per_channel=False)
        self.eps = eps

    def scales(self, w: Tensor) -> tuple[Tensor, None]:
        return (w.detach().abs().mean() + self.eps).reshape(1, 1), None

    def codes(self, w: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        return (w / scale).round().clamp(-1, 1)


class BinaryPeriodicWeight(WeightQuantizer):
    """BiPer: ``sign(sin(omega w))`` forward, ``sin(omega w)`` backward, times ``alpha = mean |w|`` per row.

    ``omega`` is set once, as ``omega_per_std / std(W)`` of the weight it is built on, so the same
    option means the same number of square-wave periods for every layer width.
    """

    kind = "binary"

    def __init__(self, out_features: int, omega: float) -> None:
        super().__init__(out_features, per_channel=True)
        self.register_buffer("omega", torch.tensor(float(omega)))

    def scales(self, w: Tensor) -> tuple[Tensor, None]:
        return w.detach().abs().mean(dim=1, keepdim=True).clamp_min(1e-12), None

    def codes(self, w: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        s = torch.sin(self.omega * w)
        return torch.where(s >= 0, 1.0, -1.0).to(w.dtype)

    def fake(self, w: Tensor) -> Tensor:
        scale, _ = self.scales(w)
        s = torch.sin(self.omega * w)
        # The square wave forward, its sine (same period) as the surrogate gradient.
        return scale * (s + (self.codes(w.detach(), scale, None) - s).detach())


# -- activation quantiser ------------------------------------------------------------------------


class ActQuant(nn.Module):
    """Input-activation fake quantisation with a straight-through estimator.

    ``mode``: ``range`` (a per-tensor range ``[lo, hi]``: observed over calibration batches for
    PTQ, an exponential moving average of each training batch's range for QAT, fixed otherwise),
    ``token`` (BitNet's per-token absmax, ``x_q = Clip(round(x Q / gamma), -Q, Q) gamma / Q``,
    ``gamma = max |x|`` over channels) or ``fp8`` (dynamic per-tensor amax scale).
    """

    def __init__(
        self, bits: int, symmetric: bool, mode: str, fmt: str = "e4m3", momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.bits, self.symmetric, self.mode, self.format, self.momentum = (
            bits,
            symmetric,
            mode,
            fmt,
            momentum,
        )
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self.observe = False  # calibration: record the range, pass x through unchanged
        self.track = False  # QAT: update the range by EMA while training

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "token":
            qmax = 2 ** (self.bits - 1) - 1
            gamma = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-5)
            return ste(x, (x.detach() * qmax / gamma).round().clamp(-qmax, qmax) * gamma / qmax)
        if self.mode == "fp8":
            scale = (x.detach().abs().amax() / FP8_MAX[self.format]).clamp_min(1e-12)
            return ste(x, (x.detach() / scale).to(FP8_DTYPES[self.format]).to(x.dtype) * scale)
        if self.observe or (self.track and self.training):
            self._update(x.detach())
            if self.observe:
                return x
        if not bool(self.ready):
            return x
        return ste(x, self.fake_range(x.detach()))

    @torch.no_grad()
    def _update(self, x: Tensor) -> None:
        lo, hi = x.amin().clamp_max(0), x.amax().clamp_min(0)
        if not bool(self.ready):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.ready.fill_(True)
        elif self.observe:
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)

    def fake_range(self, x: Tensor) -> Tensor:
        if self.symmetric:
            qmax = 2 ** (self.bits - 1) - 1
            scale = (torch.maximum(-self.lo, self.hi) / qmax).clamp_min(1e-12)
            return (x / scale).round().clamp(-qmax, qmax) * scale
        qmax = 2**self.bits - 1
        scale = ((self.hi - self.lo) / qmax).clamp_min(1e-12)
        zero = (-self.lo / scale).round()
        return ((x / scale).round() + zero).clamp(0, qmax).sub(zero) * scale


# -- the layer -----------------------------------------------------------------------------------


class QuantLinear(nn.Module):
    """A linear layer computing with a fake-quantised weight (and inputs); packs into its codes.

    It shares the ``weight``/``bias`` parameters of the ``nn.Linear`` it replaces. ``frozen``
    (a buffer, so it travels with the weights) says the weight already lies on its grid.
    """

    def __init__(self, linear: nn.Linear, weight_quant: WeightQuantizer, act_quant: ActQuant | None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.weight_quant, self.act_quant = weight_quant, act_quant
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        if self.act_quant is not None:
            x = self.act_quant(x)
        w = self.weight if bool(self.frozen) else self.weight_quant.fake(self.weight)
        return F.linear(x, w, self.bias)

    @torch.no_grad()
    def freeze(self) -> None:
        """Put the weight on its grid for good and keep its scales (PTQ, or QAT after training)."""
        if bool(self.frozen):
            return
        wq = self.weight_quant
        scale, zero = wq.scales(self.weight)
        wq.scale.copy_(scale.expand_as(wq.scale))
        if zero is not None:
            wq.zero.copy_(zero.expand_as(wq.zero))
        codes = wq.codes(self.weight, wq.scale, wq.zero)
        self.weight.copy_(wq.dequant(codes, wq.scale, wq.zero, self.weight.shape))
        self.frozen.fill_(True)
        if self.act_quant is not None:
            self.act_quant.observe = self.act_quant.track = False

    @torch.no_grad()
    def packed_weight(self) -> dict[str, Any]:
        """The codes and scales :mod:`.storage` writes (the current scales if not yet frozen)."""
        wq = self.weight_quant
        if bool(self.frozen):
            scale, zero = wq.scale, wq.zero
        else:
            scale, zero = wq.scales(self.weight)
        return wq.packed(wq.codes(self.weight, scale, zero), scale, zero, self.weight.shape)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, weights={self.weight_quant.kind}"


# -- the transforms ------------------------------------------------------------------------------


class _QuantTransform(Transform):
    """Shared flow: swap the linears, calibrate (PTQ) or arm the EMA (QAT), freeze, report."""

    owner = "quantize"
    skip: tuple[str, ...] = ()
    calibration_batches = 8
    batch_size = 64

    def make(self, linear: nn.Linear) -> QuantLinear:
        raise NotImplementedError

    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        layers = linear_layers(model, self.skip)
        check(layers, self.owner, "skip", list(self.skip), "no nn.Linear layer is left to quantise")
        new = {id(m): self.make(m) for _, m in layers}
        model = replace_modules(model, new)
        quantised = list(new.values())
        if self.when == "before":
            for q in quantised:
                if q.act_quant is not None:
                    q.act_quant.track = True
        else:
            self._calibrate(model, quantised, context)
            for q in quantised:
                q.freeze()
        return model, {"layers": len(quantised), **self.describe(), **size_facts(model, context)}

    def describe(self) -> dict[str, Any]:
        return {}

    @torch.no_grad()
    def _calibrate(
        self, model: nn.Module, quantised: list[QuantLinear], context: TransformContext | None
    ) -> None:
        observers = [
            q.act_quant for q in quantised if q.act_quant is not None and q.act_quant.mode == "range"
        ]
        if not observers:
            return
        for a in observers:
            a.observe = True
        was_training = model.training
        model.eval()
        for batch in batches(context, self.calibration_batches, self.batch_size):
            model(batch["inputs"])
        model.train(was_training)
        for a in observers:
            a.observe = False

    def finalize(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            if isinstance(module, QuantLinear):
                module.freeze()
        return model


@TRANSFORMS.register(
    "quantize",
    paper="Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
    arxiv="1712.05877",
    test_kwargs={"bits": 8},
)
class Quantize(_QuantTransform):
    """Integer fake quantisation (arXiv:1712.05877): PTQ with calibration (``after``), QAT (``before``).

    ``bits``: 8 or 4 for the weights; ``granularity``: one scale per output ``channel`` or per
    ``tensor``; ``symmetric``: a grid symmetric about zero, else affine with a zero point.
    ``activations``: bits of the input activations (``None`` keeps them in float), on a per-tensor
    range (``act_symmetric``) calibrated over ``calibration_batches`` batches of the training data
    after training, or tracked by an EMA during quantisation-aware training.
    """

    def __init__(
        self,
        bits: int = 8,
        granularity: str = "channel",
        symmetric: bool = True,
        activations: int | None = 8,
        act_symmetric: bool = False,
        calibration_batches: int = 8,
        batch_size: int = 64,
        skip: list[str] | None = None,
    ) -> None:
        check(bits in (4, 8), "quantize", "bits", bits, "8 or 4")
        check_choice("quantize", "granularity", granularity, GRANULARITY)
        check(activations in (None, 4, 8), "quantize", "activations", activations, "8, 4 or null")
        check(calibration_batches >= 1, "quantize", "calibration_batches", calibration_batches, ">= 1")
        self.bits, self.per_channel, self.symmetric = bits, granularity == "channel", symmetric
        self.activations, self.act_symmetric = activations, act_symmetric
        self.calibration_batches, self.batch_size = calibration_batches, batch_size
        self.skip = tuple(skip or ())

    def make(self, linear: nn.Linear) -> QuantLinear:
        act = None if self.activations is None else ActQuant(self.activations, self.act_symmetric, "range")
        return QuantLinear(
            linear, IntWeight(linear.out_features, self.bits, self.per_channel, self.symmetric), act
        )

    def describe(self) -> dict[str, Any]:
        return {"weight_bits": self.bits, "activation_bits": self.activations}


@TRANSFORMS.register(
    "fp8", paper="FP8 Formats for Deep Learning", arxiv="2209.05433", test_kwargs={"format": "e4m3"}
)
class FP8Quantize(_QuantTransform):
    """FP8 weights and activations through torch's float8 dtypes, "FP8 Formats ..." (arXiv:2209.05433).

    ``format``: ``e4m3`` (4 exponent bits, max 448, more precision; the paper's choice for
    weights and activations) or ``e5m2`` (IEEE-like, max 57344, more range). Each tensor is scaled
    into the format's range by its absolute maximum (per output ``channel`` or per ``tensor``);
    ``activations: true`` rounds the inputs too, with a per-batch amax scale.
    """

    def __init__(
        self,
        format: str = "e4m3",  # the paper's word, though it shadows the builtin
        granularity: str = "tensor",
        activations: bool = True,
        skip: list[str] | None = None,
    ) -> None:
        check_choice("fp8", "format", format, tuple(FP8_MAX))
        check_choice("fp8", "granularity", granularity, GRANULARITY)
        check(isinstance(activations, bool), "fp8", "activations", activations, "true or false")
        self.format, self.per_channel, self.activations = format, granularity == "channel", activations
        self.skip = tuple(skip or ())
        self.owner = "fp8"

    def make(self, linear: nn.Linear) -> QuantLinear:
        act = ActQuant(8, True, "fp8", fmt=self.format) if self.activations else None
        return QuantLinear(linear, FP8Weight(linear.out_features, self.format, self.per_channel), act)

    def describe(self) -> dict[str, Any]:
        return {"format": self.format}


@TRANSFORMS.register(
    "bitnet",
    paper="The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits",
    arxiv="2402.17764",
    test_kwargs={},
)
class BitNet(_QuantTransform):
    """BitNet b1.58 ternary weights with 8-bit activations (arXiv:2402.17764), meant ``when: before``.

    ``W_q = RoundClip(W / (gamma + eps), -1, 1)``, ``gamma = mean |W|``: every weight is -1, 0 or
    1 times one scale per matrix; inputs are quantised to ``activation_bits`` per token by their
    absmax. Trained from scratch through the straight-through estimator; the stem and the head
    keep full precision by default (``skip``), as BitNet keeps its embedding and output layer.
    """

    def __init__(self, activation_bits: int = 8, skip: list[str] | None = None) -> None:
        check(activation_bits in (4, 8), "bitnet", "activation_bits", activation_bits, "8 or 4")
        self.activation_bits = activation_bits
        self.skip = tuple(["stem", "head"] if skip is None else skip)
        self.owner = "bitnet"

    def make(self, linear: nn.Linear) -> QuantLinear:
        return QuantLinear(
            linear, TernaryWeight(linear.out_features), ActQuant(self.activation_bits, True, "token")
        )

    def describe(self) -> dict[str, Any]:
        return {"weights": "ternary", "activation_bits": self.activation_bits}


@TRANSFORMS.register(
    "biper",
    paper="BiPer: Binary Neural Networks using a Periodic Function",
    arxiv="2404.01278",
    test_kwargs={},
)
class BiPer(_QuantTransform):
    """BiPer binary weights (arXiv:2404.01278): a square wave forward, its sine backward; ``when: before``.

    ``w_b = alpha * sign(sin(omega w))`` with ``alpha = mean |w|`` per output row, trained with the
    gradient of ``alpha sin(omega w)`` (same period), which keeps forward and backward consistent
    where the sign function's surrogates do not. ``omega_per_std`` sets the frequency in radians per
    standard deviation of the layer's initial weight (the paper controls the quantisation error with
    it). Activations stay in float (weight binarisation); stem and head stay full precision.
    """

    def __init__(self, omega_per_std: float = math.pi / 2, skip: list[str] | None = None) -> None:
        check(omega_per_std > 0, "biper", "omega_per_std", omega_per_std, "expected > 0")
        self.omega_per_std = omega_per_std
        self.skip = tuple(["stem", "head"] if skip is None else skip)
        self.owner = "biper"

    def make(self, linear: nn.Linear) -> QuantLinear:
        std = float(linear.weight.detach().std().clamp_min(1e-8))
        return QuantLinear(linear, BinaryPeriodicWeight(linear.out_features, self.omega_per_std / std), None)

    def describe(self) -> dict[str, Any]:
        return {"weights": "binary", "omega_per_std": self.omega_per_std}


CAST_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@TRANSFORMS.register(
    "cast", paper="Mixed Precision Training", arxiv="1710.03740", test_kwargs={"dtype": "bfloat16"}
)
class Cast(Transform):
    """Round every floating-point parameter to a 16-bit float (arXiv:1710.03740); ``float32`` is the anchor.

    The weights keep their dtype (the model still runs in float32 on any device) but hold only
    values of ``dtype``, so the packed file stores them in 16 bits. ``dtype: float32`` changes
    nothing and only reports the uncompressed model's ``bytes`` and speed: the frontier's anchor.
    """

    def __init__(self, dtype: str = "float32") -> None:
        check_choice("cast", "dtype", dtype, tuple(CAST_DTYPES))
        self.dtype = dtype

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        for p in model.parameters():
            if p.is_floating_point():
                p.copy_(p.to(CAST_DTYPES[self.dtype]).to(p.dtype))
        return model, {"dtype": self.dtype, **size_facts(model, context)}
