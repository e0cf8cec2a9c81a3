"""Discrete key-value bottleneck ``kv_bottleneck`` (arXiv:2207.11240).

Shapes: ``x: [..., D]``; ``C`` codebooks; per codebook a fixed projection ``[D, K_d]``, keys
``[S, K_d]`` (``S`` pairs) and values ``[S, V_d]``; output ``[..., C V_d] -> [..., D]``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import CHANNEL_MIXERS


@CHANNEL_MIXERS.register(
    "kv_bottleneck",
    paper="Discrete Key-Value Bottleneck",
    arxiv="2207.11240",
    test_kwargs={"dim": 8, "num_codebooks": 2, "num_pairs": 4, "key_dim": 3, "value_dim": 3},
)
class DiscreteKeyValueBottleneck(nn.Module):
    """Discrete Key-Value Bottleneck (arXiv:2207.11240).

    For codebook ``c``: ``z_c = x P_c`` (``P_c`` a fixed random projection, as the paper's heads),
    ``i_c = argmin_s ||z_c - k_{c,s}||``, read ``v_{c, i_c}``; then ``y = W_dec [v_{1,i_1}, ..., v_{C,i_C}]``.
    Keys are not trained by gradient: they start random, or from data with :meth:`init_keys` (Lloyd
    k-means; the authors run EMA k-means updates over the data before training), and then stay
    frozen, so only the selected values change, which localises updates and limits forgetting.

    The paper's encoder is frozen, so ``x`` needs no gradient there. Inside a network it does: with
    ``input_grad=True`` the backward pass uses the soft lookup ``sum_s softmax(-||z_c - k_{c,s}||^2 /
    tau)_s v_{c,s}`` (values detached) as a straight-through estimator for the hard one, so the
    forward value is unchanged and values still receive gradient only where selected.
    """

    def __init__(
        self,
        dim: int,
        num_codebooks: int = 8,
        num_pairs: int = 64,
        key_dim: int = 8,
        value_dim: int = 8,
        input_grad: bool = True,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        owner = "kv_bottleneck"
        for name, value in (
            ("dim", dim),
            ("num_codebooks", num_codebooks),
            ("num_pairs", num_pairs),
            ("key_dim", key_dim),
            ("value_dim", value_dim),
        ):
            check_positive_int(owner, name, value)
        check(tau > 0, owner, "tau", tau, "expected > 0")
        self.dim, self.input_grad, self.tau = dim, input_grad, tau
        self.register_buffer("proj", torch.empty(num_codebooks, dim, key_dim))
        self.register_buffer("keys", torch.empty(num_codebooks, num_pairs, key_dim))
        self.values = nn.Parameter(torch.empty(num_codebooks, num_pairs, value_dim))
        self.reset_parameters()  # before the decoder draws: the order seeded models always had
        self.decoder = nn.Linear(num_codebooks * value_dim, dim)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random projections, random keys (undoing :meth:`init_keys`) and random values."""
        dev = self.values.device
        self.proj.copy_(torch.randn(self.proj.shape, device=dev) / math.sqrt(self.dim))
        self.keys.copy_(torch.randn(self.keys.shape, device=dev))
        self.values.copy_(torch.randn(self.values.shape, device=dev))

    def _project(self, x: Tensor) -> Tensor:
        return torch.einsum("...d,cdk->...ck", x, self.proj)  # [..., C, K_d]

    def _sq_distances(self, z: Tensor) -> Tensor:
        # ||z||^2 - 2 z.k + ||k||^2: one matmul instead of a [..., C, S, K_d] difference tensor.
        cross = torch.einsum("...ck,csk->...cs", z, self.keys)
        return z.square().sum(-1, keepdim=True) - 2 * cross + self.keys.square().sum(-1)  # [..., C, S]

    def select(self, x: Tensor) -> Tensor:
        """Index of the nearest key in each codebook, ``[..., C]``."""
        return self._sq_distances(self._project(x)).argmin(-1)

    def forward(self, x: Tensor) -> Tensor:
        z = self._project(x)
        d2 = self._sq_distances(z)
        idx = d2.argmin(-1)  # [..., C]
        codebook = torch.arange(self.values.shape[0], device=x.device)
        read = self.values[codebook, idx]  # [..., C, V_d]
        if self.input_grad:
            soft = torch.einsum("...cs,csv->...cv", torch.softmax(-d2 / self.tau, -1), self.values.detach())
            read = read + (soft - soft.detach())
        return self.decoder(rearrange(read, "... c v -> ... (c v)"))

    @torch.no_grad()
    def init_keys(self, x: Tensor, iterations: int = 10) -> None:
        """k-means (Lloyd) on the projected inputs ``x: [N, D]``, started from random inputs."""
        z = rearrange(self._project(x.reshape(-1, self.dim)), "n c k -> c n k")
        num_pairs = self.keys.shape[1]
        start = torch.randint(0, z.shape[1], (num_pairs,), device=x.device)
        keys = z[:, start].clone()  # [C, S, K_d]
        for _ in range(iterations):
            assign = torch.cdist(z, keys).argmin(-1)  # [C, N]
            onehot = nn.functional.one_hot(assign, num_pairs).to(z.dtype)  # [C, N, S]
            counts = onehot.sum(1)  # [C, S]
            means = torch.einsum("cns,cnk->csk", onehot, z) / counts.clamp(min=1).unsqueeze(-1)
            keys = torch.where(counts.unsqueeze(-1) > 0, means, keys)
        self.keys.copy_(keys)
