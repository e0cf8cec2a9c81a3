"""A synthetic prior over classification tables for prior-fitted networks (PFN, arXiv:2112.10510;
TabPFN, arXiv:2207.01848): random structural causal models built from random MLPs.

One table: ``c`` independent causes ``z ~ N(0, s^2)`` feed a random MLP of 1-3 layers (random
weights, a random activation per layer, Gaussian noise added at every node); every node of every
layer is a variable of the causal graph. ``F`` of the nodes are the features and another node is
the target, cut into ``K`` classes at random quantiles and relabelled in a random order. The
features are standardised with the training rows' statistics, as the real tables are.

Deterministic from the seed: the same seed gives the same tables.

Shapes (a batch of tables of one size): ``x [B, N, F_max]`` (features past a table's own ``F``
are zero and the others scaled by ``F_max / F``, TabPFN's way of making tables of different widths
look alike), ``y [B, N]`` int64, ``num_classes [B]``; the first ``num_train`` rows of each table are
its training rows, the rest its test rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int

ACTIVATIONS = (torch.tanh, torch.relu, torch.sin, lambda h: h)


@dataclass
class PriorBatch:
    """Tables drawn from the prior: ``x [B, N, F_max]``, ``y [B, N]``, ``num_classes [B]``, ``num_train``."""

    x: Tensor
    y: Tensor
    num_classes: Tensor
    num_train: int


def sample_table(
    g: torch.Generator, num_rows: int, num_features: int, num_classes: int
) -> tuple[Tensor, Tensor]:
    """One table of the prior: features ``[num_rows, num_features]`` and labels ``[num_rows]``."""
    num_causes = int(torch.randint(1, num_features + 2, (), generator=g))
    depth = int(torch.randint(1, 4, (), generator=g))
    width = max(num_features + 1, num_causes) + int(torch.randint(0, 8, (), generator=g))
    noise = float(torch.empty(()).uniform_(0.01, 0.3, generator=g))
    h = torch.randn(num_rows, num_causes, generator=g) * torch.empty(num_causes).uniform_(
        0.5, 2.0, generator=g
    )
    nodes = []
    for _ in range(depth):
        w = torch.randn(h.shape[1], width, generator=g) / h.shape[1] ** 0.5
        b = torch.randn(width, generator=g) * 0.5
        act = ACTIVATIONS[int(torch.randint(0, len(ACTIVATIONS), (), generator=g))]
        h = act(h @ w + b) + noise * torch.randn(num_rows, width, generator=g)
        nodes.append(h)
    nodes = torch.cat(nodes, dim=1)  # [num_rows, depth * width]: every variable of the graph
    chosen = torch.randperm(nodes.shape[1], generator=g)[: num_features + 1]
    x, target = nodes[:, chosen[:-1]], nodes[:, chosen[-1]].contiguous()
    # K classes at random quantiles of the target (each class at least a small share of rows).
    cuts = torch.sort(torch.empty(num_classes - 1).uniform_(0.1, 0.9, generator=g)).values
    y = torch.bucketize(target, torch.quantile(target, cuts))
    y = torch.randperm(num_classes, generator=g)[y]
    return x, y


def sample_prior_batch(
    seed: int,
    *,
    batch_size: int = 8,
    num_rows: int = 128,
    num_train: int = 96,
    max_features: int = 32,
    max_classes: int = 10,
) -> PriorBatch:
    """``batch_size`` tables of ``num_rows`` rows (``num_train`` training rows) from the prior."""
    owner = "pfn prior"
    for name, value in (
        ("batch_size", batch_size),
        ("num_rows", num_rows),
        ("num_train", num_train),
        ("max_features", max_features),
    ):
        check_positive_int(owner, name, value)
    check(num_train < num_rows, owner, "num_train", num_train, f"expected < num_rows={num_rows}")
    check(
        isinstance(max_classes, int) and max_classes >= 2, owner, "max_classes", max_classes, "expected >= 2"
    )
    g = torch.Generator().manual_seed(seed)
    xs, ys, ks = [], [], []
    for _ in range(batch_size):
        f = int(torch.randint(1, max_features + 1, (), generator=g))
        k = int(torch.randint(2, max_classes + 1, (), generator=g))
        x, y = sample_table(g, num_rows, f, k)
        train = x[:num_train]
        std = train.std(0)
        x = (x - train.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
        x = torch.cat([x * (max_features / f), x.new_zeros(num_rows, max_features - f)], dim=1)
        xs.append(x)
        ys.append(y)
        ks.append(k)
    return PriorBatch(torch.stack(xs).clamp(-100, 100), torch.stack(ys), torch.tensor(ks), num_train)
