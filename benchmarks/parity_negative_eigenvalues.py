"""Parity with and without negative eigenvalues in DeltaNet's state transition.

Claim ("Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues", arXiv:2411.12537):
a linear RNN whose transition matrices only have eigenvalues in ``[0, 1]`` cannot solve parity at
arbitrary length in finite precision; letting DeltaNet's ``I - beta k k^T`` reach eigenvalue -1
(``beta in [0, 2]``, a reflection) makes parity learnable and the solution extends to longer strings.

Setup: bit strings, target at every position = parity of the prefix (dense supervision). Train a
small ``lm`` (``deltanet`` mixer) on length ``--train-len`` strings, then report the accuracy of
the *last* position (chance = 0.5) on fresh strings of the training length and longer.

    python benchmarks/parity_negative_eigenvalues.py              # ~3-6 min on 2 CPU cores
    python benchmarks/parity_negative_eigenvalues.py --steps 300 --seeds 0   # quick look
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import mixerlab


def batch(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits ``[n, length]`` and prefix parities ``[n, length]``."""
    bits = torch.randint(0, 2, (n, length), generator=generator)
    return bits, bits.cumsum(1) % 2


def build(negative: bool, args: argparse.Namespace) -> torch.nn.Module:
    mixer = {
        "name": "deltanet",
        "num_heads": args.heads,
        "allow_negative_eigenvalues": negative,
        "chunk_size": 16,
    }
    return mixerlab.create_model(
        "lm",
        vocab_size=2,
        dim=args.dim,
        depth=args.depth,
        mixer=mixer,
        channel_mixer=args.channel_mixer,
        tie_embeddings=False,
    )


@torch.no_grad()
def last_position_accuracy(model: torch.nn.Module, length: int, seed: int, n: int = 512) -> float:
    bits, parity = batch(n, length, torch.Generator().manual_seed(10_000 + seed))
    logits, _ = model(bits)
    return (logits[:, -1].argmax(-1) == parity[:, -1]).float().mean().item()


def train(negative: bool, seed: int, args: argparse.Namespace) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(seed)
    model = build(negative, args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    for _ in range(args.steps):
        bits, parity = batch(args.batch, args.train_len, gen)
        logits, _ = model(bits)
        loss = F.cross_entropy(logits.reshape(-1, 2), parity.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model, loss.item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-len", type=int, default=16)
    p.add_argument("--test-lens", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--channel-mixer", default="swiglu")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"parity, deltanet lm depth={args.depth} dim={args.dim} heads={args.heads} "
        f"channel_mixer={args.channel_mixer}, train len={args.train_len}, {args.steps} steps x "
        f"batch {args.batch}, lr={args.lr}; last-position accuracy on 512 fresh strings (chance 0.5)"
    )
    cols = " | ".join(f"acc@{n}" for n in args.test_lens)
    print(f"| eigenvalues | seed | final train loss | {cols} | seconds |")
    print("|---|---|---|" + "---|" * len(args.test_lens) + "---|")
    summary: dict[str, list[list[float]]] = {}
    for negative in (False, True):
        label = "[-1, 1]" if negative else "[0, 1]"
        for seed in args.seeds:
            start = time.perf_counter()
            model, loss = train(negative, seed, args)
            accs = [last_position_accuracy(model, n, seed) for n in args.test_lens]
            summary.setdefault(label, []).append(accs)
            cells = " | ".join(f"{a:.3f}" for a in accs)
            print(
                f"| {label} | {seed} | {loss:.4f} | {cells} | {time.perf_counter() - start:.0f} |", flush=True
            )
    for label, rows in summary.items():
        means = torch.tensor(rows).mean(0).tolist()
        print(f"mean {label}: " + ", ".join(f"acc@{n}={m:.3f}" for n, m in zip(args.test_lens, means)))


if __name__ == "__main__":
    main()
