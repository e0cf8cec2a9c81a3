"""A prior-fitted network, "Transformers Can Do Bayesian Inference" (PFN, arXiv:2112.10510), in the
tabular form of TabPFN (arXiv:2207.01848): a set-input transformer that classifies a table's test
rows in context, trained only on tables from a synthetic prior (:mod:`mixerlab.tasks.prior`).

Each row is one token: its features through a linear map, plus, for a training row, the
embedding of its label. Attention is non-causal among the training rows, and a test row attends
to the training rows only (never to another test row, nor to itself through attention), so each
test row's prediction depends on the training rows and on itself alone. There are no positions:
the rows are a set. At use a new table is predicted with no gradient step on it
(:meth:`PriorFittedNetwork.predict`).

Training: ``python -m mixerlab.models.pfn --steps 2000 --out pfn.pt`` (or
``scripts/train_pfn.py``) fits the network to prior tables and saves ``{"config", "state_dict"}``
with ``torch.save``; :func:`load_pfn` reads it back with ``weights_only=True``.

Shapes: ``x [B, N, F_max]`` (train rows first, then test rows), ``y_train [B, N_train]``;
logits ``[B, N - N_train, K_max]``; attention heads ``[B, H, N, head_dim]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.tasks.prior import sample_prior_batch


class TrainToTestAttention(nn.Module):
    """Attention of every row to the training rows only (PFN's attention mask, arXiv:2112.10510).

    ``x [B, N, D]`` with the first ``num_train`` rows the training rows -> ``[B, N, D]``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        check_divisible("pfn", "dim", dim, "num_heads", num_heads)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, num_train: int) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        # Keys and values of the training rows only: test rows never see each other.
        y = F.scaled_dot_product_attention(q, k[:, :, :num_train], v[:, :, :num_train])
        return self.out(rearrange(y, "b h n d -> b n (h d)"))


class PFNLayer(nn.Module):
    """A pre-norm transformer layer whose attention reads the training rows only."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TrainToTestAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))

    def forward(self, x: Tensor, num_train: int) -> Tensor:
        x = x + self.attn(self.norm1(x), num_train)
        return x + self.mlp(self.norm2(x))


class PriorFittedNetwork(nn.Module):
    """PFN / TabPFN (arXiv:2112.10510, arXiv:2207.01848): classify test rows in context of training rows.

    ``forward(x [B, N, F_max], y_train [B, N_train]) -> logits [B, N - N_train, max_classes]``.
    """

    def __init__(
        self,
        max_features: int = 32,
        max_classes: int = 10,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 128,
    ) -> None:
        super().__init__()
        for name, value in (
            ("max_features", max_features),
            ("dim", dim),
            ("depth", depth),
            ("num_heads", num_heads),
            ("hidden_dim", hidden_dim),
        ):
            check_positive_int("pfn", name, value)
        check(isinstance(max_classes, int) and max_classes >= 2, "pfn", "max_classes", max_classes, ">= 2")
        self.config = {
            "max_features": max_features,
            "max_classes": max_classes,
            "dim": dim,
            "depth": depth,
            "num_heads": num_heads,
            "hidden_dim": hidden_dim,
        }
        self.max_features, self.max_classes = max_features, max_classes
        self.features = nn.Linear(max_features, dim)
        self.labels = nn.Embedding(max_classes, dim)
        self.layers = nn.ModuleList(PFNLayer(dim, num_heads, hidden_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, max_classes)

    def forward(self, x: Tensor, y_train: Tensor) -> Tensor:
        num_train = y_train.shape[1]
        check(
            x.dim() == 3 and x.shape[2] == self.max_features and 0 < num_train < x.shape[1],
            "pfn",
            "inputs.shape",
            (tuple(x.shape), num_train),
            f"expected x [B, N, {self.max_features}] and 0 < N_train < N training labels",
        )
        h = self.features(x)
        h = torch.cat([h[:, :num_train] + self.labels(y_train), h[:, num_train:]], dim=1)
        for layer in self.layers:
            h = layer(h, num_train)
        return self.head(self.norm(h[:, num_train:]))

    @torch.no_grad()
    def predict(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, num_classes: int) -> Tensor:
        """Class log-probabilities ``[M, num_classes]`` of one table's test rows, in context, no gradient.

        ``x_train [N, F]``, ``y_train [N]``, ``x_test [M, F]``, with ``F <= max_features`` standardised
        features (padded and scaled here as the prior's tables are).
        """
        f = x_train.shape[1]
        check(
            f <= self.max_features,
            "pfn",
            "num_features",
            f,
            f"this network reads at most {self.max_features}",
        )
        check(
            2 <= num_classes <= self.max_classes,
            "pfn",
            "num_classes",
            num_classes,
            f"this network predicts 2 to {self.max_classes} classes",
        )
        x = torch.cat([x_train, x_test]).float() * (self.max_features / f)
        x = F.pad(x, (0, self.max_features - f)).clamp(-100, 100)
        logits = self(x[None], y_train[None].long())[0, :, :num_classes]
        return logits.log_softmax(-1)


def pfn_loss(model: PriorFittedNetwork, batch: Any) -> Tensor:
    """Cross-entropy of the test rows of prior tables, each over its own classes."""
    logits = model(batch.x, batch.y[:, : batch.num_train])
    classes = torch.arange(model.max_classes)
    logits = logits.masked_fill(classes >= batch.num_classes[:, None, None], float("-inf"))
    return F.cross_entropy(logits.flatten(0, 1), batch.y[:, batch.num_train :].flatten())


def train_pfn(
    *,
    steps: int = 2000,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 8,
    max_rows: int = 256,
    max_seconds: float | None = None,
    log=print,
    **config: int,
) -> PriorFittedNetwork:
    """Fit a PFN to prior tables for ``steps`` steps (or ``max_seconds``); every step a fresh batch.

    Each batch draws its table size: ``N`` rows in ``[32, max_rows]`` with a random share of
    30-90 % training rows. ``config`` goes to :class:`PriorFittedNetwork`.
    """
    check_positive_int("train_pfn", "steps", steps)
    torch.manual_seed(seed)
    model = PriorFittedNetwork(**config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    started, running = time.perf_counter(), None
    for step in range(steps):
        rows = int(torch.randint(32, max_rows + 1, (), generator=g))
        num_train = int(rows * float(torch.empty(()).uniform_(0.3, 0.9, generator=g)))
        batch = sample_prior_batch(
            seed * 1_000_003 + step,
            batch_size=batch_size,
            num_rows=rows,
            num_train=num_train,
            max_features=model.max_features,
            max_classes=model.max_classes,
        )
        loss = pfn_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0:
            log(f"step {step + 1}/{steps}: loss {running:.4f} ({time.perf_counter() - started:.0f}s)")
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            log(f"stopped at step {step + 1}: max_seconds={max_seconds} reached")
            break
    return model.eval()


def save_pfn(model: PriorFittedNetwork, path: str | Path) -> None:
    """``torch.save`` of ``{"config", "state_dict"}``: plain data, loadable with ``weights_only=True``."""
    torch.save({"config": dict(model.config), "state_dict": model.state_dict()}, path)


def load_pfn(path: str | Path) -> PriorFittedNetwork:
    """A PFN saved by :func:`save_pfn`, read with ``weights_only=True`` (no code runs)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = PriorFittedNetwork(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a prior-fitted network (PFN) on synthetic tables.")
    parser.add_argument("--out", required=True, help="where to save the weights (.pt)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-seconds", type=float, default=540.0, help="stop early after this long")
    args = parser.parse_args(argv)
    model = train_pfn(steps=args.steps, seed=args.seed, lr=args.lr, max_seconds=args.max_seconds)
    save_pfn(model, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
