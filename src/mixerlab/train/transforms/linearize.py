"""Linearisation: a trained softmax-attention LM becomes a linear-time one (LoLCATs, Lizard).

Every causal ``attention`` layer is replaced by :class:`LinearizedAttention`, the sum of two
branches initialised from the attention's own weights::

    y = SWA_w(x) + g * LA(x)        g: [D], zero at the start

``SWA_w`` is sliding-window softmax attention with the teacher's q/k/v/o projections and rotary
positions (exact for the last ``w`` tokens); ``LA`` is ``gla`` (gated linear attention, Lizard's
choice) or ``linear_attention`` (elu+1 features) whose query/key/value/output projections start
as the teacher's (key/value heads repeated for grouped-query attention). Its state is the
window's ``w - 1`` keys/values plus the linear branch's fixed matrix, so decoding memory no
longer grows with the context.

``mixer="lizard"`` instead builds the registered ``lizard`` layer (one layer, shared q/k/v
projections copied from the teacher, Hedgehog feature maps at the identity, a meta memory of
``num_meta`` sink tokens next to the window) with its linear branch's weight ``alpha`` at zero, so
it too starts as the teacher within its window.

Training follows LoLCATs' two stages, both inside the transform (``when: after``; the trainer
has no training phase after a transform):

1. *attention transfer*: each new layer, fed the teacher's own input to that layer, learns to
   reproduce the teacher attention's output (mean squared error; only the new layers train);
2. *fine-tuning*: the whole model learns the task with the teacher's predictions as soft targets
   (``soft_target_loss`` of the ``distill`` method, arXiv:1503.02531) mixed with the task loss.

Shapes: ``x: [B, T, D]``; heads ``[B, T, H, K]``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_choice, check_positive_int
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.layers.token_mixers.attention import Attention, SlidingWindowAttention
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.layers.token_mixers.linear_attention import GatedLinearAttention, LinearAttention
from mixerlab.layers.token_mixers.lizard import Lizard
from mixerlab.registry import TRANSFORMS
from mixerlab.train.transforms.base import Transform, TransformContext, batches, size_facts

LINEAR_MIXERS = ("gla", "linear_attention", "lizard")


class LinearizedAttention(TokenMixer):
    """Sliding-window softmax attention plus a linear-attention branch (Lizard-style, arXiv:2507.09025).

    ``y = window(x) + gate * linear(x)``; the state is ``{"window": ..., "linear": ...}``, the
    two branches' own states, of fixed size once ``T >= window``.
    """

    modes = ("default", "reference")

    def __init__(self, window: SlidingWindowAttention, linear: TokenMixer) -> None:
        super().__init__()
        self.window, self.linear = window, linear
        self.dim = window.dim
        self.gate = nn.Parameter(torch.zeros(window.dim))

    @TokenMixer.mode.setter
    def mode(self, value: str) -> None:
        TokenMixer.mode.fset(self, value)
        # "reference" reaches both branches' plain forms; "default" their fast ones.
        for branch in (self.window, self.linear):
            branch.mode = "reference" if value == "reference" else branch.modes[0]

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        state = state or {}
        y_w, s_w = self.window(x, state=state.get("window"))
        y_l, s_l = self.linear(x, state=state.get("linear"))
        return y_w + self.gate * y_l, {"window": s_w, "linear": s_l}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {
            "window": self.window.init_state(batch_size, device=device, dtype=dtype),
            "linear": self.linear.init_state(batch_size, device=device, dtype=dtype),
        }

    def state_size(self, seq_len: int) -> int:
        return self.window.state_size(seq_len) + self.linear.state_size(seq_len)


def _heads_expanded(weight: Tensor, groups: int, repeat: int, head_dim: int) -> Tensor:
    """Rows of ``groups`` heads ``[G K, D]`` repeated to ``G * repeat`` heads (grouped-query attention)."""
    w = weight.reshape(groups, head_dim, -1).repeat_interleave(repeat, dim=0)
    return w.reshape(groups * repeat * head_dim, -1)


@torch.no_grad()
def lizard_from(attention: Attention, window: int, num_meta: int = 4) -> Lizard:
    """A :class:`~mixerlab.layers.token_mixers.lizard.Lizard` layer with ``attention``'s q/k/v/o
    weights (key/value heads repeated for grouped-query attention) and its linear branch off
    (``alpha = 0``): the teacher itself while the context fits the meta memory and the window."""
    H, G, K, D = attention.num_heads, attention.num_kv_heads, attention.head_dim, attention.dim
    bias = attention.q_proj.bias is not None
    lizard = Lizard(
        D,
        num_heads=H,
        head_dim=K,
        window=window,
        num_meta=num_meta,
        rotary_base=attention.rotary_base,
        bias=bias,
    )
    lizard.q_proj.load_state_dict(attention.q_proj.state_dict())
    lizard.o_proj.load_state_dict(attention.o_proj.state_dict())
    k_w, v_w = attention.kv_proj.weight.chunk(2, dim=0)
    lizard.kv_proj.weight.copy_(torch.cat([_heads_expanded(w, G, H // G, K) for w in (k_w, v_w)]))
    if bias:
        k_b, v_b = attention.kv_proj.bias.chunk(2)
        expanded = [b.reshape(G, K).repeat_interleave(H // G, dim=0).reshape(-1) for b in (k_b, v_b)]
        lizard.kv_proj.bias.copy_(torch.cat(expanded))
    lizard.alpha.zero_()
    return lizard.to(device=attention.q_proj.weight.device, dtype=attention.q_proj.weight.dtype)


@torch.no_grad()
def linearized_from(
    attention: Attention, mixer: str, window: int, feature_map: str
) -> LinearizedAttention | Lizard:
    """A :class:`LinearizedAttention` whose two branches start from ``attention``'s weights
    (``mixer="lizard"``: the :func:`lizard_from` layer)."""
    if mixer == "lizard":
        return lizard_from(attention, window)
    H, G, K, D = attention.num_heads, attention.num_kv_heads, attention.head_dim, attention.dim
    bias = attention.q_proj.bias is not None
    swa = SlidingWindowAttention(
        D,
        num_heads=H,
        window=window,
        num_kv_heads=G,
        head_dim=K,
        rotary_base=attention.rotary_base,
        bias=bias,
    )
    swa.load_state_dict(attention.state_dict())
    k_w, v_w = attention.kv_proj.weight.chunk(2, dim=0)
    k_full, v_full = (_heads_expanded(w, G, H // G, K) for w in (k_w, v_w))
    if mixer == "linear_attention":
        linear: TokenMixer = LinearAttention(
            D, num_heads=H, head_dim=K, feature_map=feature_map, feature_dim=K
        )
    else:
        expand = H * K / D
        linear = GatedLinearAttention(D, num_heads=H, expand_k=expand, expand_v=expand)
    linear.qk_proj.weight.copy_(torch.cat([attention.q_proj.weight, k_full]))
    linear.v_proj.weight.copy_(v_full)
    linear.o_proj.weight.copy_(attention.o_proj.weight)
    hybrid = LinearizedAttention(swa, linear)
    return hybrid.to(device=attention.q_proj.weight.device, dtype=attention.q_proj.weight.dtype)


@TRANSFORMS.register(
    "linearize",
    paper="LoLCATs: On Low-Rank Linearizing of Large Language Models",
    arxiv="2410.10254",
    test_kwargs={"window": 4, "match_steps": 2, "finetune_steps": 2, "batch_size": 4},
)
class Linearize(Transform):
    """Linearise a trained attention LM (LoLCATs, arXiv:2410.10254; Lizard, arXiv:2507.09025), ``after``.

    ``mixer``: the linear branch, ``gla`` or ``linear_attention`` (``feature_map`` for the latter),
    or ``lizard`` (the registered one-layer form, arXiv:2507.09025, see the module docstring);
    ``window``: the sliding window of exact softmax attention. ``match_steps`` of attention transfer
    (each layer matches the teacher attention's output on the teacher's input) at ``match_lr``, then
    ``finetune_steps`` of the whole model on the task loss mixed (``alpha``) with the teacher's
    softened predictions (``temperature``) at ``lr``, on batches of ``batch_size`` of the training
    data. Facts: the matching loss before/after, and the state size per sequence of the teacher and
    the linearised model at the training length and at 4x it.
    """

    def __init__(
        self,
        mixer: str = "gla",
        window: int = 16,
        feature_map: str = "elu+1",
        match_steps: int = 200,
        finetune_steps: int = 200,
        batch_size: int = 32,
        match_lr: float = 3e-3,
        lr: float = 1e-3,
        alpha: float = 0.5,
        temperature: float = 2.0,
    ) -> None:
        check_choice("linearize", "mixer", mixer, LINEAR_MIXERS)
        check_choice("linearize", "feature_map", feature_map, ("elu+1", "taylor"))
        check_positive_int("linearize", "window", window)
        check_positive_int("linearize", "batch_size", batch_size)
        for field, value in (("match_steps", match_steps), ("finetune_steps", finetune_steps)):
            check(isinstance(value, int) and value >= 0, "linearize", field, value, "an integer >= 0")
        check(match_lr > 0 and lr > 0, "linearize", "lr", (match_lr, lr), "learning rates > 0")
        check(0 <= alpha <= 1, "linearize", "alpha", alpha, "expected a value in [0, 1]")
        self.mixer, self.window, self.feature_map = mixer, window, feature_map
        self.match_steps, self.finetune_steps, self.batch_size = match_steps, finetune_steps, batch_size
        self.match_lr, self.lr, self.alpha, self.temperature = match_lr, lr, alpha, temperature

    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        attentions = [m for m in model.modules() if type(m) is Attention]
        if not attentions:
            raise ConfigError("linearize", "model", type(model).__name__, "a model with 'attention' layers")
        if not all(a.causal for a in attentions):
            raise ConfigError("linearize", "model.mixing", "noncausal", "causal attention (a language model)")
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        new = {id(a): linearized_from(a, self.mixer, self.window, self.feature_map) for a in attentions}
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in new:
                    setattr(parent, name, new[id(child)])
        hybrids = list(new.values())
        match = self._transfer(teacher, model, hybrids, context) if self.match_steps else {}
        loss = self._finetune(teacher, model, context) if self.finetune_steps else None
        seq_len = _seq_len(context)
        model.eval()
        return model, {
            "mixer": self.mixer,
            "window": self.window,
            **match,
            "finetune_loss_last": loss,
            "state_size_teacher": teacher.state_size(seq_len),
            "state_size_teacher_4x": teacher.state_size(4 * seq_len),
            "state_size": model.state_size(seq_len),
            "state_size_4x": model.state_size(4 * seq_len),
            **size_facts(model, context),
        }

    def _transfer(
        self, teacher: nn.Module, student: nn.Module, hybrids: list[TokenMixer], context: Any
    ) -> dict[str, float]:
        """Stage 1: each new layer learns its teacher attention's output on the teacher's input."""
        teacher_layers = [m for m in teacher.modules() if type(m) is Attention]
        captured: list[tuple[Tensor, Tensor]] = []

        def capture(module: nn.Module, args: tuple[Tensor, ...], output: tuple[Tensor, Any]) -> None:
            captured.append((args[0].detach(), output[0].detach()))

        handles = [layer.register_forward_hook(capture) for layer in teacher_layers]
        params = [p for h in hybrids for p in h.parameters()]
        optimizer = torch.optim.Adam(params, lr=self.match_lr)
        student.train()
        first = last = float("nan")
        try:
            for step, batch in enumerate(batches(context, self.match_steps, self.batch_size)):
                captured.clear()
                with torch.no_grad():
                    teacher(batch["inputs"])
                loss = sum(
                    F.mse_loss(h(x)[0], y) / y.pow(2).mean().clamp_min(1e-8)
                    for h, (x, y) in zip(hybrids, captured)
                )
                loss = loss / len(hybrids)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                last = loss.item()
                first = last if step == 0 else first
        finally:
            for h in handles:
                h.remove()
        return {"match_loss_first": first, "match_loss_last": last}

    def _finetune(self, teacher: nn.Module, student: nn.Module, context: Any) -> float:
        """Stage 2: the whole model on the task loss and the teacher's soft targets."""
        from mixerlab.train.evaluate import objective_of
        from mixerlab.train.methods.distill import soft_target_loss

        objective = objective_of(context.task)
        optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=self.lr)
        student.train()
        loss = torch.zeros(())
        for batch in batches(context, self.finetune_steps, self.batch_size):
            targets = batch["targets"]
            with torch.no_grad():
                teacher_pred, _ = teacher(batch["inputs"])
            with collect_aux_losses() as aux:
                pred, _ = student(batch["inputs"])
                task = objective.loss(pred, targets)
                soft = soft_target_loss(pred, teacher_pred, targets, self.temperature)
                loss = (1 - self.alpha) * task + self.alpha * soft + aux.total().to(task.device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
        return loss.item()


def _seq_len(context: TransformContext | None) -> int:
    data = None if context is None else context.data
    if data is not None and isinstance(data.inputs, Tensor) and data.inputs.dim() == 2:
        return data.inputs.shape[1]
    return 64
