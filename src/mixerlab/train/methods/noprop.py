"""NoProp (arXiv:2503.24322): every block learns, on its own, to denoise a noisy label embedding.

Discrete-time NoProp on ``Model(stem, backbone, head)`` with ``T = depth`` blocks. Block ``t``
becomes a denoiser ``u_hat = f_t(x, z_{t-1})``: its own copy of the stem embeds ``x``, the noisy
label ``z_{t-1}`` is projected and added to every token, the block mixes them, and a linear map
of the pooled (or per-token) output predicts the clean label embedding ``u_y``. In training
``z_{t-1}`` is drawn directly from ``q(z_{t-1} | y) = N(sqrt(abar_{t-1}) u_y, (1 - abar_{t-1}) I)``,
so no block ever runs forward or backward through another. The model's head (after the final
norm) learns to classify ``z_T ~ q(z_T | y)``. At inference the denoisers are chained from
``z_0 = 0`` by the deterministic (DDIM-style) step ``z_t = sqrt(abar_t) u_hat + sqrt(1 - abar_t) eps_hat``.

Shapes: label embeddings ``u: [C, D]``; ``z``: ``[B, 1, D]`` for a class target (one label per
example, added to every token) or ``[B, T, D]`` for a token target (one per position).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import (
    MethodModel,
    TrainingMethod,
    aux_total,
    blocks_of,
    fresh_copy,
    num_classes,
    read_out,
    require_kind,
    run_block,
    unwrap,
)


def cosine_alpha_bar(steps: int) -> Tensor:
    """``abar_t`` for ``t = 0..T``: from pure noise (``abar_0 ~ 0``) to the clean label (``abar_T ~ 1``)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    return torch.sin(0.5 * math.pi * t).pow(2).clamp(1e-4, 1 - 1e-4).float()


class Denoiser(nn.Module):
    """One NoProp block: ``(x, z_{t-1}) -> u_hat``, with its own stem, label projection and readout."""

    def __init__(self, stem: nn.Module, block: nn.Module, dim: int) -> None:
        super().__init__()
        self.stem, self.block = stem, block
        self.label_in = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.label_out = nn.Linear(dim, dim)

    def forward(self, inputs: Any, z: Tensor, per_token: bool) -> Tensor:
        h, _ = self.stem(inputs)
        h = run_block(self.block, h + self.label_in(z))
        h = self.norm(h)
        prefix = getattr(self.stem, "num_prefix_tokens", 0)
        pooled = h if per_token else h[:, prefix:].mean(dim=1, keepdim=True)
        return self.label_out(pooled)


@METHODS.register(
    "noprop",
    paper="NoProp: Training Neural Networks without Back-propagation or Forward-propagation",
    arxiv="2503.24322",
    summary="Each block learns to denoise a noisy label embedding on its own; inference chains them.",
    test_kwargs={"seed": 0},
)
class NoProp(TrainingMethod):
    """NoProp-DT (arXiv:2503.24322): independent per-block denoising of label embeddings.

    The loss of block ``t`` is ``w_t * ||u_hat_t - u_y||^2`` with the paper's SNR weights
    ``w_t ~ SNR(t) - SNR(t-1)`` normalised to mean 1 (``snr_weighting=False``: all 1), plus the
    head's cross-entropy on ``z_T``. The class embeddings ``u`` are fixed orthonormal rows times
    ``sqrt(D)`` (drawn from ``seed``); block ``t > 1`` gets a copy of the stem so that blocks share
    no parameter. Only for class targets (``classify``, ``next_token``).
    """

    def __init__(self, seed: int = 0, snr_weighting: bool = True) -> None:
        self.seed, self.snr_weighting = seed, snr_weighting
        self.generator = torch.Generator().manual_seed(seed)

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks = blocks_of(model, "noprop")
        self.kind = require_kind(model, "noprop", ("classify", "next_token"), "it denoises label embeddings")
        base = unwrap(model)
        dim, classes, steps = base.backbone.dim, num_classes(model, "noprop"), len(blocks)
        # Block 1 keeps the model's stem; the others get their own copies (no shared parameters).
        stems = [base.stem] + [fresh_copy(base.stem) for _ in range(steps - 1)]
        denoisers = nn.ModuleList(Denoiser(s, b, dim) for s, b in zip(stems, blocks))
        g = torch.Generator().manual_seed(self.seed)
        if classes <= dim:  # orthonormal rows: every pair of classes equally far apart
            embedding = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0][:classes]
        else:  # more classes than dimensions: random unit rows, nearly orthogonal
            embedding = nn.functional.normalize(torch.randn(classes, dim, generator=g), dim=-1)
        wrapped = MethodModel(model, {"denoisers": denoisers})
        wrapped.register_buffer("label_embedding", embedding * math.sqrt(dim))
        wrapped.register_buffer("alpha_bar", cosine_alpha_bar(steps))
        wrapped.__dict__["_infer"] = lambda inputs, **kw: self.infer(wrapped, inputs)
        return wrapped

    def weights(self, alpha_bar: Tensor) -> Tensor:
        snr = alpha_bar / (1 - alpha_bar)
        w = (snr[1:] - snr[:-1]).clamp_min(0)
        return w / w.mean() if self.snr_weighting else torch.ones_like(w)

    def _per_token(self, targets: Tensor) -> bool:
        return targets.dim() == 2

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        u_all, alpha_bar = model.label_embedding, model.alpha_bar
        per_token = self._per_token(targets)
        labels = targets.clamp_min(0)  # ignored positions get class 0; their loss is masked below
        u = u_all[labels]  # [B, D] or [B, T, D]
        if not per_token:
            u = u[:, None, :]
        scored = (targets != -100)[..., None].to(u) if per_token else torch.ones_like(u[..., :1])
        weights = self.weights(alpha_bar)
        with collect_aux_losses() as aux:
            total = torch.zeros((), device=u.device)
            for t, denoiser in enumerate(model.extras["denoisers"]):
                # z_{t} ~ q(z_t | y): no other block is run to make this block's input.
                z = self._noisy(u, alpha_bar[t])
                err = (denoiser(inputs, z, per_token) - u).pow(2).sum(-1, keepdim=True)
                total = total + weights[t] * (err * scored).sum() / scored.sum().clamp_min(1)
            z_last = self._noisy(u, alpha_bar[-1])
            pred = self._classify(model, z_last, per_token)
            loss = objective.loss(pred, targets)
            total = total + loss + aux_total(aux, loss)
        return total, pred

    def _noisy(self, u: Tensor, alpha_bar: Tensor) -> Tensor:
        noise = torch.randn(u.shape, generator=self.generator).to(u)
        return alpha_bar.sqrt() * u + (1 - alpha_bar).sqrt() * noise

    def _classify(self, model: nn.Module, z: Tensor, per_token: bool) -> Tensor:
        base = unwrap(model)
        if per_token:
            return read_out(base, z, {})
        # A pooled head reads the label as both its class token and its only other token, so
        # class-token and mean pooling both see z.
        return base.head(base.backbone.norm(torch.cat([z, z], dim=1)), _LabelToken(), {})

    def infer(self, model: MethodModel, inputs: Any) -> tuple[Tensor, dict]:
        """Chain the denoisers from ``z_0 = 0`` (the noise's mean) and classify ``z_T``."""
        alpha_bar = model.alpha_bar
        first = model.extras["denoisers"][0]
        h, _ = first.stem(inputs)
        per_token = self.kind == "next_token"
        z = h.new_zeros(h.shape[0], h.shape[1] if per_token else 1, h.shape[-1])
        for t, denoiser in enumerate(model.extras["denoisers"]):
            u_hat = denoiser(inputs, z, per_token)
            a_prev, a_next = alpha_bar[t], alpha_bar[t + 1]
            eps_hat = (z - a_prev.sqrt() * u_hat) / (1 - a_prev).sqrt()
            z = a_next.sqrt() * u_hat + (1 - a_next).sqrt() * eps_hat
        return self._classify(model, z, per_token), {}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


class _LabelToken(nn.Module):
    """A stand-in stem for reading ``[z, z]``: one prefix token (the class token) and one other."""

    num_prefix_tokens = 1
