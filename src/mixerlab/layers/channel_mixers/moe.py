"""Mixture-of-experts channel mixers: ``moe`` (top-k routed experts) and ``widenet_moe`` (one MoE
shared across layers, "Go Wider Instead of Deeper").

Shapes: ``x: [..., D]`` is flattened to ``N`` tokens ``[N, D]``; ``E`` experts of hidden width ``H``;
router logits ``[N, E]``; each token picks ``k`` experts. Experts' weights are stacked
(``w_in: [E, D, H or 2H]``, ``w_out: [E, H, D]``) and tokens are dispatched by sorting the ``N k``
assignments by expert, so the work is one gather, one matmul per expert and one ``index_add``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.aux_loss import report_aux_loss
from mixerlab.layers.channel_mixers.mlp import hidden_width
from mixerlab.layers.sharing import shared
from mixerlab.registry import CHANNEL_MIXERS

_EXPERT_ACTS = {"swiglu": nn.functional.silu, "geglu": nn.functional.gelu, "gelu": nn.functional.gelu}


def route(scores: Tensor, top_k: int, capacity: int | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-k routing with an optional per-expert capacity.

    ``scores: [N, E]`` -> ``(expert, token, slot, keep)``, each ``[N k]``, sorted by expert. An
    assignment is kept when fewer than ``capacity`` earlier assignments went to its expert; "earlier"
    means all first choices before all second choices, each in token order (GShard's priority), so a
    token loses its second expert before any token loses its first.
    """
    n, num_experts = scores.shape
    top = scores.topk(top_k, dim=-1).indices  # [N, k]
    expert = top.t().reshape(-1)  # choice-major: [k N]
    token = torch.arange(n, device=scores.device).repeat(top_k)
    slot = torch.arange(top_k, device=scores.device).repeat_interleave(n)
    order = torch.sort(expert, stable=True).indices
    expert, token, slot = expert[order], token[order], slot[order]
    if capacity is None:
        keep = torch.ones_like(expert, dtype=torch.bool)
    else:
        counts = torch.bincount(expert, minlength=num_experts)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(expert.numel(), device=scores.device) - start[expert]
        keep = rank < capacity
    return expert, token, slot, keep


@CHANNEL_MIXERS.register(
    "moe",
    paper="Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
    arxiv="2101.03961",
    test_kwargs={"dim": 8, "num_experts": 4, "top_k": 2, "hidden_dim": 6, "num_shared_experts": 1},
    meta={"time": "O(N k D H)", "memory": "O(N k D)"},
)
class MixtureOfExperts(nn.Module):
    """Top-k mixture of experts of "Switch Transformers" (arXiv:2101.03961) and its successors.

    Router ``s = gate(x W_r)`` with ``gate`` = softmax over experts (Switch, GShard) or an element-wise
    sigmoid (DeepSeek-V3); top-k experts ``T(x)``; weights ``g_e = s_e`` or, with ``renormalize``,
    ``s_e / sum_{j in T(x)} s_j`` (only for ``k > 1``: with ``k = 1`` that would be 1 and cut the
    router's gradient, so Switch's raw probability is used):

        y = sum_{e in T(x)} g_e(x) E_e(x) + sum_{shared} S(x),   E_e(x) = W_out,e (act(W_g,e x) * W_up,e x)

    Experts are small GLUs (``expert="swiglu"``/``"geglu"``) or GELU MLPs (``"gelu"``).

    Capacity (training only): each expert takes at most ``ceil(capacity_factor N k / E)`` assignments
    per forward; an assignment beyond that is dropped, i.e. contributes nothing, so a token whose
    every expert overflowed gets ``y = 0`` (plus shared experts) and passes through the block's
    residual only. In eval mode nothing is dropped, so a token's output never depends on the other
    tokens of the batch. ``capacity_factor=None`` (default) never drops.

    Load balancing (Switch eq. 4), reported through :func:`~mixerlab.layers.aux_loss.report_aux_loss`
    as ``"moe_load_balance"`` while training: ``aux_loss_coef * E * sum_e f_e P_e`` with ``f_e`` the
    fraction of the ``N k`` assignments routed to ``e`` and ``P_e`` the mean router probability of
    ``e`` (for sigmoid gating, the scores normalised over experts).
    """

    def __init__(
        self,
        dim: int,
        num_experts: int = 8,
        top_k: int = 2,
        expand: float = 2.0,
        hidden_dim: int | None = None,
        expert: str = "swiglu",
        gating: str = "softmax",
        renormalize: bool = True,
        num_shared_experts: int = 0,
        capacity_factor: float | None = None,
        aux_loss_coef: float = 0.01,
    ) -> None:
        super().__init__()
        owner = "moe"
        hidden = hidden_width(owner, dim, expand, hidden_dim)
        check_positive_int(owner, "num_experts", num_experts)
        check_positive_int(owner, "top_k", top_k)
        check(top_k <= num_experts, owner, "top_k", top_k, f"must be <= num_experts={num_experts}")
        check_choice(owner, "expert", expert, tuple(_EXPERT_ACTS))
        check_choice(owner, "gating", gating, ("softmax", "sigmoid"))
        check(
            isinstance(num_shared_experts, int) and num_shared_experts >= 0,
            owner,
            "num_shared_experts",
            num_shared_experts,
            "expected an integer >= 0",
        )
        check(
            capacity_factor is None or capacity_factor > 0,
            owner,
            "capacity_factor",
            capacity_factor,
            "expected None (never drop) or > 0",
        )
        check(aux_loss_coef >= 0, owner, "aux_loss_coef", aux_loss_coef, "expected >= 0")
        self.dim, self.hidden, self.num_experts, self.top_k = dim, hidden, num_experts, top_k
        self.gating, self.renormalize = gating, renormalize
        self.capacity_factor, self.aux_loss_coef = capacity_factor, aux_loss_coef
        self.act = _EXPERT_ACTS[expert]
        self.glu = expert != "gelu"
        in_width = 2 * hidden if self.glu else hidden
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.w_in = nn.Parameter(torch.empty(num_experts, dim, in_width))
        self.w_out = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.reset_parameters()  # before the shared experts draw: the order seeded models always had
        self.shared_in = self.shared_out = None
        if num_shared_experts:
            width = hidden * num_shared_experts
            self.shared_in = nn.Linear(dim, 2 * width if self.glu else width, bias=False)
            self.shared_out = nn.Linear(width, dim, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The experts' weights, ``N(0, 1 / fan_in)`` (router and shared experts: ``nn.Linear``'s)."""
        dev = self.w_in.device
        self.w_in.copy_(torch.randn(self.w_in.shape, device=dev) / math.sqrt(self.dim))
        self.w_out.copy_(torch.randn(self.w_out.shape, device=dev) / math.sqrt(self.hidden))

    def capacity(self, num_tokens: int) -> int | None:
        if self.capacity_factor is None or not self.training:
            return None
        return math.ceil(self.capacity_factor * num_tokens * self.top_k / self.num_experts)

    def _ffn(self, h: Tensor, w_out: Tensor) -> Tensor:
        if self.glu:
            gate, up = h.chunk(2, dim=-1)
            return (self.act(gate) * up) @ w_out
        return self.act(h) @ w_out

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.dim)  # [N, D]
        logits = self.router(flat)  # [N, E]
        scores = torch.softmax(logits, -1) if self.gating == "softmax" else torch.sigmoid(logits)
        expert, token, slot, keep = route(scores, self.top_k, self.capacity(flat.shape[0]))
        weight = scores[token, expert]
        if self.renormalize and self.top_k > 1:
            chosen = scores.gather(-1, scores.topk(self.top_k, dim=-1).indices)  # [N, k]
            weight = weight / chosen.sum(-1)[token]
        expert, token, weight = expert[keep], token[keep], weight[keep]
        counts = torch.bincount(expert, minlength=self.num_experts).tolist()
        outputs = []
        for e, segment in enumerate(torch.split(token, counts)):
            if segment.numel():
                outputs.append(self._ffn(flat[segment] @ self.w_in[e], self.w_out[e]))
        y = torch.zeros_like(flat)
        if outputs:
            y = y.index_add(0, token, torch.cat(outputs) * weight.unsqueeze(-1))
        if self.shared_in is not None:
            y = y + self._ffn(self.shared_in(flat), self.shared_out.weight.t())
        if self.training and self.aux_loss_coef > 0:
            report_aux_loss("moe_load_balance", self.load_balance_loss(scores))
        return y.reshape(shape)

    def load_balance_loss(self, scores: Tensor) -> Tensor:
        """``coef * E * sum_e f_e P_e`` (Switch eq. 4) from router scores ``[N, E]``.

        ``f_e`` counts top-k choices before capacity and carries no gradient, as in Switch; the
        gradient reaches the router through ``P_e``.
        """
        top = scores.detach().topk(self.top_k, dim=-1).indices
        counts = torch.bincount(top.reshape(-1), minlength=self.num_experts).to(scores.dtype)
        probs = scores if self.gating == "softmax" else scores / scores.sum(-1, keepdim=True)
        fraction = counts / counts.sum()
        return self.aux_loss_coef * self.num_experts * (fraction * probs.mean(0)).sum()


# ---------------------------------------------------------------------------------------------------
# WideNet: one MoE shared by every layer that asks for the same key.


def shared_moe(share_key: str, **config: Any) -> MixtureOfExperts:
    """The MoE shared by every ``widenet_moe`` of the current sharing scope with this key and config."""
    return shared(("widenet_moe", share_key, *sorted(config.items())), lambda: MixtureOfExperts(**config))


@CHANNEL_MIXERS.register(
    "widenet_moe",
    paper="Go Wider Instead of Deeper",
    arxiv="2107.11817",
    test_kwargs={"dim": 8, "num_experts": 4, "top_k": 2, "hidden_dim": 6, "share_key": "test"},
)
class WideNetMoE(nn.Module):
    """Go Wider Instead of Deeper (arXiv:2107.11817): one MoE shared across layers, a norm per layer.

    ``y_l = MoE(LN_l(x))``: the experts and router are the same module in every layer built with the
    same ``share_key`` and options within one model (see :mod:`mixerlab.layers.sharing`); only
    ``LN_l`` is per layer. WideNet shares the whole transformer block; mixerlab shares the MoE only
    (the token mixers stay per layer).
    WideNet's defaults are top-2 routing with a load-balancing loss; ``layer_norm=False`` drops
    ``LN_l`` (the block's own pre-norm is already per layer).
    """

    def __init__(
        self,
        dim: int,
        share_key: str = "widenet",
        num_experts: int = 4,
        top_k: int = 2,
        expand: float = 2.0,
        hidden_dim: int | None = None,
        expert: str = "gelu",
        capacity_factor: float | None = None,
        aux_loss_coef: float = 0.01,
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("widenet_moe", "dim", dim)
        check(isinstance(share_key, str), "widenet_moe", "share_key", share_key, "expected a string")
        self.dim = dim
        self.norm = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.moe = shared_moe(
            share_key,
            dim=dim,
            num_experts=num_experts,
            top_k=top_k,
            expand=expand,
            hidden_dim=hidden_dim,
            expert=expert,
            capacity_factor=capacity_factor,
            aux_loss_coef=aux_loss_coef,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.moe(self.norm(x))
