"""Decoding cost per token from a short and a long context, and the state each mixer carries.

For every token mixer whose state does not grow with the context (``state_kind`` fixed or
logarithmic), the one-token decoding rate after 1k and after 16k tokens of context, and their
ratio (1.0 = flat); for every mixer asked for, ``state_size`` at both contexts and as a share of
full attention's cache at the long one (bounded caches: h2o, sliding_window, mla's latents).
The context is a real prefill through the mixer's default (fast) form; the decoding loop is
:func:`mixerlab.bench.speed.measure_decode`, the one ``mixerlab speed`` uses.

    python benchmarks/decode_flatness.py                      # every fixed/logarithmic-state mixer
    python benchmarks/decode_flatness.py --mixers h2o,mla,sliding_window --state-only
"""

from __future__ import annotations

import argparse

import torch

from mixerlab.bench.speed import SpeedConfig, build_mixer, measure_decode
from mixerlab.registry import TOKEN_MIXERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", default=None, help="comma-separated names (default: fixed-state ones)")
    parser.add_argument("--short", type=int, default=1024)
    parser.add_argument("--long", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=16, help="decoding steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--state-only", action="store_true", help="state sizes only, no timing")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.mixers:
        names = [n.strip() for n in args.mixers.split(",") if n.strip()]
    else:
        names = [
            n
            for n in TOKEN_MIXERS.list()
            if TOKEN_MIXERS.entry(n).meta.get("state_kind") in ("fixed", "logarithmic")
            and TOKEN_MIXERS.create(n, **TOKEN_MIXERS.entry(n).test_kwargs).causal
        ]
    cfg = SpeedConfig(
        batch_size=1,
        dim=args.dim,
        num_heads=4,
        decode_contexts=[args.short, args.long],
        decode_steps=args.steps,
        repeats=args.repeats,
        max_step_seconds=120.0,
    )
    attention = build_mixer("attention", cfg, torch.float32).state_size(args.long)
    threads = torch.get_num_threads()
    print(f"dim={args.dim}, B=1, float32, {threads} threads; contexts {args.short} and {args.long}")
    print(
        f"| mixer | state kind | state @{args.short} | state @{args.long} | vs attention @{args.long} "
        f"| decode tok/s @{args.short} | decode tok/s @{args.long} | long / short |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        module = build_mixer(name, cfg, torch.float32).eval()
        kind = TOKEN_MIXERS.entry(name).meta.get("state_kind", "?")
        short_state, long_state = module.state_size(args.short), module.state_size(args.long)
        share = f"{long_state / attention:.4f}"
        if args.state_only:
            rates = ["-", "-", "-"]
        else:
            fast = measure_decode(module, cfg, args.short, torch.float32)["decode_tok_s"]
            slow = measure_decode(module, cfg, args.long, torch.float32)["decode_tok_s"]
            rates = [f"{fast:,.0f}", f"{slow:,.0f}", f"{fast / slow:.2f}"]
        print(f"| {name} | {kind} | {short_state:,} | {long_state:,} | {share} | " + " | ".join(rates) + " |")


if __name__ == "__main__":
    main()
