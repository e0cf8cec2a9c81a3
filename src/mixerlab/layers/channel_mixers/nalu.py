"""Neural arithmetic units ``nac`` and ``nalu``, "Neural Arithmetic Logic Units" (arXiv:1808.00508).

Shapes: ``x: [..., D] -> [..., D]``; weights ``[D, D]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import CHANNEL_MIXERS


class _NACWeight(nn.Module):
    """``W = tanh(W_hat) * sigmoid(M_hat)``: biased towards entries in {-1, 0, 1}."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_hat = nn.Parameter(torch.empty(dim, dim))
        self.m_hat = nn.Parameter(torch.empty(dim, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = math.sqrt(6.0 / (2 * self.w_hat.shape[0]))  # Xavier-uniform, as in the paper's experiments
        self.w_hat.uniform_(-bound, bound)
        self.m_hat.uniform_(-bound, bound)

    def forward(self) -> Tensor:
        return torch.tanh(self.w_hat) * torch.sigmoid(self.m_hat)


@CHANNEL_MIXERS.register(
    "nac", paper="Neural Arithmetic Logic Units", arxiv="1808.00508", test_kwargs={"dim": 8}
)
class NAC(nn.Module):
    """Neural accumulator, "Neural Arithmetic Logic Units" (arXiv:1808.00508): ``y = W x``.

    ``W = tanh(W_hat) * sigmoid(M_hat)`` (no bias): additions and subtractions of inputs.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        check_positive_int("nac", "dim", dim)
        self.dim = dim
        self.weight = _NACWeight(dim)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight().t()


@CHANNEL_MIXERS.register(
    "nalu", paper="Neural Arithmetic Logic Units", arxiv="1808.00508", test_kwargs={"dim": 8}
)
class NALU(nn.Module):
    """Neural Arithmetic Logic Units (arXiv:1808.00508).

        a = W x,   m = exp(W log(|x| + eps)),   g = sigmoid(G x),   y = g * a + (1 - g) * m

    with the NAC weight ``W`` shared by the additive and the multiplicative (log-space) paths, as
    in the paper. ``m`` is positive: NALU cannot produce the sign of a product. The log-space sum is
    clamped at ``max_log`` before ``exp`` (a mixerlab guard: inside a deep network with unbounded
    inputs ``exp`` would otherwise overflow).
    """

    def __init__(self, dim: int, eps: float = 1e-7, max_log: float = 20.0) -> None:
        super().__init__()
        check_positive_int("nalu", "dim", dim)
        check(eps > 0, "nalu", "eps", eps, "expected > 0")
        check(max_log > 0, "nalu", "max_log", max_log, "expected > 0")
        self.dim, self.eps, self.max_log = dim, eps, max_log
        self.weight = _NACWeight(dim)
        self.gate = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight()
        a = x @ w.t()
        m = torch.exp((torch.log(x.abs() + self.eps) @ w.t()).clamp(max=self.max_log))
        g = torch.sigmoid(self.gate(x))
        return g * a + (1 - g) * m
