"""Pruning transforms: unstructured magnitude, N:M (2:4), attention heads, channels, gradual.

Unstructured and N:M pruning zero weights in place (masks from ``torch.nn.utils.prune`` while a
``before`` transform trains, written into the weights by ``finalize``); the packed file
(:mod:`.storage`) stores a matrix with many zeros as a one-bit mask plus its non-zeros, so the
bytes fall with the density. Head and channel pruning are structured: they rebuild the
projections without the removed heads or hidden channels, so the model really gets smaller
(``params_removed``).

Shapes: a linear weight is ``[out, in]``; N:M groups run along ``in``; heads ``[B, T, H, K]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.token_mixers.attention import Attention, SlidingWindowAttention
from mixerlab.registry import TRANSFORMS
from mixerlab.train.transforms.base import (
    Transform,
    TransformContext,
    batches,
    check_fraction,
    prunable_weights,
    size_facts,
    sparsity,
)


def _remove_masks(model: nn.Module) -> nn.Module:
    for module, name in prunable_weights(model):
        if prune.is_pruned(module) and hasattr(module, name + "_orig"):
            prune.remove(module, name)
    return model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


class _MaskTransform(Transform):
    """Masks while training (``before``), zeros in the weights once finalised."""

    def finalize(self, model: nn.Module) -> nn.Module:
        return _remove_masks(model)

    def facts(self, model: nn.Module, context: TransformContext | None) -> dict[str, Any]:
        if self.when == "after":
            _remove_masks(model)
        return {"sparsity": sparsity(model), **size_facts(model, context)}


@TRANSFORMS.register(
    "prune_magnitude",
    paper="Learning both Weights and Connections for Efficient Neural Networks",
    arxiv="1506.02626",
    test_kwargs={"amount": 0.5},
)
class PruneMagnitude(_MaskTransform):
    """Unstructured magnitude pruning (arXiv:1506.02626): zero the smallest ``amount`` of weights.

    ``scope="global"`` ranks every prunable weight together; ``"layer"`` prunes each matrix by
    ``amount``. Before training the zeros are kept by masks (``torch.nn.utils.prune``) and made
    permanent by :meth:`finalize`; after training they are written into the weights at once.
    """

    def __init__(self, amount: float = 0.5, scope: str = "global") -> None:
        check(0 <= amount < 1, "prune_magnitude", "amount", amount, "expected 0 <= amount < 1")
        check_choice("prune_magnitude", "scope", scope, ("global", "layer"))
        self.amount, self.scope = amount, scope

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        targets = prunable_weights(model)
        if self.scope == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=self.amount)
        else:
            for module, name in targets:
                prune.l1_unstructured(module, name, amount=self.amount)
        return model, self.facts(model, context)


def nm_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive weights along the input dim: ``[out, in]`` bools."""
    w = weight.detach().reshape(weight.shape[0], -1)
    groups = w.abs().reshape(w.shape[0], -1, m)  # [out, in / m, m]
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


@TRANSFORMS.register(
    "prune_nm",
    paper="Accelerating Sparse Deep Neural Networks (N:M fine-grained structured sparsity)",
    arxiv="2104.08378",
    test_kwargs={"n": 2, "m": 4},
)
class PruneNM(_MaskTransform):
    """N:M structured sparsity (arXiv:2104.08378): ``n`` non-zeros in every ``m`` consecutive inputs.

    2:4 is what sparse tensor cores run at twice the dense rate. Each output row of a weight
    ``[out, in]`` is cut into groups of ``m`` along ``in`` and the ``n`` largest magnitudes of each
    group are kept (a convolution's weight is flattened to ``[out, in * k]``). A matrix whose input
    size ``m`` does not divide is left dense and counted in ``skipped``. ``when: before`` fixes the
    masks of the initial weights and trains the rest (the mask is not re-drawn during training).
    """

    def __init__(self, n: int = 2, m: int = 4) -> None:
        check_positive_int("prune_nm", "m", m)
        check(isinstance(n, int) and 0 < n < m, "prune_nm", "n", n, f"an integer in 1..{m - 1}")
        self.n, self.m = n, m

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        skipped = 0
        for module, name in prunable_weights(model):
            weight = getattr(module, name)
            if weight[0].numel() % self.m:
                skipped += 1
                continue
            prune.custom_from_mask(module, name, nm_mask(weight, self.n, self.m))
        return model, {"pattern": f"{self.n}:{self.m}", "skipped": skipped, **self.facts(model, context)}


def _rows(linear: nn.Linear, keep: Tensor) -> nn.Linear:
    """A linear layer with only the output rows ``keep``."""
    new = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
    new.weight.data.copy_(linear.weight.data[keep])
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.data[keep])
    return new


def _cols(linear: nn.Linear, keep: Tensor) -> nn.Linear:
    """A linear layer reading only the inputs ``keep``."""
    new = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
    new.weight.data.copy_(linear.weight.data[:, keep])
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.data)
    return new


def _input_scores(
    model: nn.Module, layers: list[nn.Linear], context: TransformContext | None, num_batches: int
) -> list[Tensor] | None:
    """Mean absolute input of each of ``layers`` per input channel over calibration batches."""
    if context is None or context.data is None:
        return None
    sums = [torch.zeros(layer.in_features, device=layer.weight.device) for layer in layers]

    def hook(i: int):
        def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            sums[i].add_(args[0].detach().abs().reshape(-1, args[0].shape[-1]).mean(dim=0))

        return record

    handles = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches(context, num_batches, 64):
            model(batch["inputs"])
    model.train(was_training)
    for h in handles:
        h.remove()
    return sums


@TRANSFORMS.register(
    "prune_heads",
    paper="Are Sixteen Heads Really Better than One?",
    arxiv="1905.10650",
    test_kwargs={"amount": 0.5},
)
class PruneHeads(Transform):
    """Attention head pruning (arXiv:1905.10650): remove the least important ``amount`` of heads per layer.

    A head's importance is the mean size of its contribution to the layer's output,
    ``E |o_h W_O[:, h]|`` over calibration batches of the training data (the magnitudes of its
    query and output weights when there are none). The query, key/value and output projections
    are rebuilt without the removed heads, and at least one head stays. Softmax attention layers
    (``attention``, ``sliding_window``) with as many key/value heads as query heads are pruned;
    others are counted in ``skipped``.
    """

    def __init__(self, amount: float = 0.5, calibration_batches: int = 4) -> None:
        check_fraction("prune_heads", "amount", amount)
        self.amount, self.calibration_batches = amount, calibration_batches

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        before = _params(model)
        mixers = [m for m in model.modules() if type(m) in (Attention, SlidingWindowAttention)]
        eligible = [m for m in mixers if m.num_kv_heads == m.num_heads and m.num_heads > 1]
        scores = _input_scores(model, [m.o_proj for m in eligible], context, self.calibration_batches)
        removed = 0
        for i, mixer in enumerate(eligible):
            H, K = mixer.num_heads, mixer.head_dim
            w_o = mixer.o_proj.weight.reshape(mixer.dim, H, K)
            if scores is None:
                w_q = mixer.q_proj.weight.reshape(H, K, -1)
                score = w_q.pow(2).sum(dim=(1, 2)).sqrt() * w_o.pow(2).sum(dim=(0, 2)).sqrt()
            else:
                # |o_h| per channel times the output weights that read it.
                score = (scores[i].reshape(H, K) * w_o.abs().sum(dim=0)).sum(dim=1)
            drop = min(round(self.amount * H), H - 1)
            if drop == 0:
                continue
            heads = score.argsort(descending=True)[: H - drop].sort().values
            q_rows = (heads[:, None] * K + torch.arange(K, device=heads.device)).reshape(-1)
            kv_rows = torch.cat([q_rows, q_rows + H * K])  # keys then values, head-major
            mixer.q_proj = _rows(mixer.q_proj, q_rows)
            mixer.kv_proj = _rows(mixer.kv_proj, kv_rows)
            mixer.o_proj = _cols(mixer.o_proj, q_rows)
            mixer.num_heads = mixer.num_kv_heads = H - drop
            removed += drop
        return model, {
            "heads_removed": removed,
            "skipped": len(mixers) - len(eligible),
            "params_removed": before - _params(model),
            **size_facts(model, context),
        }


def _channel_mixers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, kind)`` of each MLP (``up``/``down``) or GLU (``gate_up``/``down``) channel mixer."""
    found = []
    for m in model.modules():
        down = getattr(m, "down", None)
        if type(down) is not nn.Linear:
            continue
        if type(getattr(m, "up", None)) is nn.Linear and m.up.out_features == down.in_features:
            found.append((m, "mlp"))
        elif (
            type(getattr(m, "gate_up", None)) is nn.Linear and m.gate_up.out_features == 2 * down.in_features
        ):
            found.append((m, "glu"))
    return found


@TRANSFORMS.register(
    "prune_channels",
    paper="Pruning Filters for Efficient ConvNets (structured channel pruning)",
    arxiv="1608.08710",
    test_kwargs={"amount": 0.5},
)
class PruneChannels(Transform):
    """Structured channel pruning (arXiv:1608.08710): remove ``amount`` of each feed-forward's channels.

    Li et al. rank whole filters by their L1 norm and remove the smallest; here a hidden channel
    of an MLP or GLU channel mixer is ranked by the L1 norm of its outgoing weights times its mean
    absolute activation on calibration batches (the norm of its incoming weights without data),
    and the up/gate and down projections are rebuilt without the removed channels.
    """

    def __init__(self, amount: float = 0.5, calibration_batches: int = 4) -> None:
        check_fraction("prune_channels", "amount", amount)
        self.amount, self.calibration_batches = amount, calibration_batches

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        before = _params(model)
        mixers = _channel_mixers(model)
        scores = _input_scores(model, [m.down for m, _ in mixers], context, self.calibration_batches)
        removed = 0
        for i, (mixer, kind) in enumerate(mixers):
            hidden = mixer.down.in_features
            out_norm = mixer.down.weight.abs().sum(dim=0)
            if scores is not None:
                score = out_norm * scores[i]
            else:
                up = mixer.up.weight if kind == "mlp" else mixer.gate_up.weight[hidden:]
                score = out_norm * up.abs().sum(dim=1)
            drop = min(round(self.amount * hidden), hidden - 1)
            keep = score.argsort(descending=True)[: hidden - drop].sort().values
            if kind == "mlp":
                mixer.up = _rows(mixer.up, keep)
            else:
                mixer.gate_up = _rows(mixer.gate_up, torch.cat([keep, keep + hidden]))
            mixer.down = _cols(mixer.down, keep)
            removed += drop
        return model, {
            "channels_removed": removed,
            "params_removed": before - _params(model),
            **size_facts(model, context),
        }


def cubic_sparsity(step: int, final: float, initial: float, start: int, end: int) -> float:
    """Zhu & Gupta's ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_end - t_0))^3`` within ``[t_0, t_end]``."""
    if step <= start:
        return initial if step == start else 0.0
    progress = min(1.0, (step - start) / max(end - start, 1))
    return final + (initial - final) * (1.0 - progress) ** 3


@TRANSFORMS.register(
    "prune_gradual",
    paper="To prune, or not to prune: exploring the efficacy of pruning for model compression",
    arxiv="1710.01878",
    test_kwargs={"final": 0.5, "end_step": 4, "frequency": 1},
)
class PruneGradual(Transform):
    """Gradual magnitude pruning on a cubic schedule (arXiv:1710.01878), during training (``when: before``).

    Sparsity rises from ``initial`` at ``start_step`` to ``final`` at ``end_step`` as
    ``s_t = s_f + (s_i - s_f)(1 - (t - t_0)/(t_end - t_0))^3``; every ``frequency`` steps the
    global magnitude masks are recomputed at ``s_t`` (a pruned weight never comes back).

    Transforms have no per-step hook, so the step is counted by a forward pre-hook on the model
    that adds one for every forward in training mode (one forward per optimiser step with the
    standard method; methods that run the student several times a step advance it faster) and
    kept in a buffer ``gradual_prune_step``, so a resumed run continues the schedule. Set
    ``end_step`` to about the run's step budget (``train.max_steps``, or epochs x steps per epoch).
    ``finalize`` writes the zeros into the weights and removes the hook and the buffer.
    """

    def __init__(
        self,
        final: float = 0.8,
        initial: float = 0.0,
        start_step: int = 0,
        end_step: int = 200,
        frequency: int = 10,
    ) -> None:
        check_fraction("prune_gradual", "final", final)
        check_fraction("prune_gradual", "initial", initial)
        check(initial <= final, "prune_gradual", "initial", initial, f"expected <= final ({final})")
        check(
            isinstance(start_step, int) and 0 <= start_step < end_step,
            "prune_gradual",
            "start_step",
            start_step,
            f"an integer in [0, end_step={end_step})",
        )
        check_positive_int("prune_gradual", "frequency", frequency)
        self.final, self.initial, self.start, self.end, self.frequency = (
            final,
            initial,
            start_step,
            end_step,
            frequency,
        )
        self._handle: Any = None

    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.final, self.initial, self.start, self.end)

    @torch.no_grad()
    def _prune_to(self, model: nn.Module, amount: float) -> None:
        targets = prunable_weights(model)
        magnitudes = torch.cat([(m.weight_orig * m.weight_mask).abs().flatten() for m, _ in targets])
        k = round(amount * magnitudes.numel())
        if k == 0:
            return
        threshold = magnitudes.kthvalue(k).values
        for m, _ in targets:
            # Zeros (already pruned) stay below any threshold, so the masks only shrink.
            m.weight_mask.mul_(((m.weight_orig * m.weight_mask).abs() > threshold).to(m.weight_mask.dtype))

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        if self.when == "after":  # no training left: prune to the final sparsity at once
            prune.global_unstructured(
                prunable_weights(model), pruning_method=prune.L1Unstructured, amount=self.final
            )
            _remove_masks(model)
            return model, {"sparsity": sparsity(model), **size_facts(model, context)}
        for module, name in prunable_weights(model):
            prune.identity(module, name)
        model.register_buffer("gradual_prune_step", torch.zeros((), dtype=torch.long))

        def step(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not module.training:
                return
            t = int(module.gradual_prune_step)
            if t % self.frequency == 0 and t <= self.end:
                self._prune_to(module, self.sparsity_at(t))
            module.gradual_prune_step += 1

        self._handle = model.register_forward_pre_hook(step)
        self._prune_to(model, self.sparsity_at(0))
        return model, {"schedule": "cubic", "final": self.final, "end_step": self.end}

    def finalize(self, model: nn.Module) -> nn.Module:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        inner = _owner_of(model, "gradual_prune_step")
        if inner is not None:
            del inner._buffers["gradual_prune_step"]
        return _remove_masks(model)


def _owner_of(model: nn.Module, buffer: str) -> nn.Module | None:
    for m in model.modules():
        if buffer in m._buffers:
            return m
    return None
