"""What is registered: one line per entry, and the README table of token mixers."""

from __future__ import annotations

from mixerlab.errors import check_choice
from mixerlab.registry import (
    BASELINES,
    CHANNEL_MIXERS,
    HEADS,
    METHODS,
    MODELS,
    NORMS,
    OBJECTIVES,
    STEMS,
    TASKS,
    TOKEN_MIXERS,
    TRANSFORMS,
    Registry,
)


def registries() -> dict[str, Registry]:
    import mixerlab.bench.baselines  # the baselines of other fields
    import mixerlab.tasks  # noqa: F401  (importing mixerlab registers blocks/models; this, the tasks)

    return {
        "mixers": TOKEN_MIXERS,
        "channel_mixers": CHANNEL_MIXERS,
        "norms": NORMS,
        "stems": STEMS,
        "heads": HEADS,
        "models": MODELS,
        "tasks": TASKS,
        "objectives": OBJECTIVES,
        "methods": METHODS,
        "transforms": TRANSFORMS,
        "baselines": BASELINES,
    }


def mixing_support(builder) -> str:
    """What a mixer class supports beyond causal 1-D, as the README's mixing column says it."""
    noncausal = getattr(builder, "noncausal", "none")
    packed = getattr(builder, "packed", "none")
    causal = getattr(builder, "causal", True)
    parts = [
        "causal" if causal else "",
        {"native": "non-causal", "bidirectional": "non-causal (bidir.)"}.get(noncausal, ""),
        # A causal mixer gets 2-D orders through the cross-scan wrapper; an image mixer mixes its
        # grid natively (and takes no scan wrapper).
        ("2-D (cross-scan)" if causal else "2-D grid (native)") if noncausal != "none" else "",
        {"native": "packed", "split": "packed (split)"}.get(packed, ""),
    ]
    return ", ".join(p for p in parts if p)


def listing(kind: str | None = None) -> str:
    """Every registered entry with its one-line summary, grouped by kind."""
    regs = registries()
    if kind is not None:
        check_choice("list", "kind", kind, list(regs))
        regs = {kind: regs[kind]}
    lines = []
    for title, registry in regs.items():
        lines.append(f"{title} ({len(registry)}):")
        width = max((len(e.name) for e in registry), default=0)
        for entry in registry:
            arxiv = f"  [arXiv:{entry.arxiv}]" if entry.arxiv else ""
            lines.append(f"  {entry.name:<{width}}  {entry.summary or entry.paper}{arxiv}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _arxiv(entry) -> str:
    return f"[{entry.arxiv}](https://arxiv.org/abs/{entry.arxiv})" if entry.arxiv else ""


def markdown_table() -> str:
    """The README's block tables: token mixers with their state size and complexity (from each
    entry's ``meta``), then channel mixers and norms. README.md holds this text verbatim between
    its ``blocks`` markers (tested), so registering a block is what puts it in the docs."""
    regs = registries()
    lines = [
        f"Token mixers ({len(regs['mixers'])}); state size is per sequence (T tokens seen, H heads, "
        "K/V head dims, G key/value heads, D width, N state dim, W window or kernel).",
        "",
        _row(["name", "paper", "arXiv", "state size", "time", "memory", "modes", "mixing"]),
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in regs["mixers"]:
        meta = e.meta
        modes = ", ".join(getattr(e.builder, "modes", ()))
        cells = [
            f"`{e.name}`",
            e.paper,
            _arxiv(e),
            str(meta.get("state", "")),
            str(meta.get("time", "")),
            str(meta.get("memory", "")),
            modes,
            mixing_support(e.builder),
        ]
        lines.append(_row(cells))
    lines += [
        "",
        f"Channel mixers ({len(regs['channel_mixers'])}) and norms ({len(regs['norms'])}).",
        "",
        _row(["name", "kind", "paper", "arXiv"]),
        "|---|---|---|---|",
    ]
    for kind, key in (("channel mixer", "channel_mixers"), ("norm", "norms")):
        for e in regs[key]:
            lines.append(_row([f"`{e.name}`", kind, e.paper or e.summary, _arxiv(e)]))
    lines += [
        "",
        "Stems, heads, objectives, training methods, transforms and baselines of other fields.",
        "",
        _row(["name", "kind", "what", "arXiv"]),
        "|---|---|---|---|",
    ]
    for kind, key in (
        ("stem", "stems"),
        ("head", "heads"),
        ("objective", "objectives"),
        ("method", "methods"),
        ("transform", "transforms"),
        ("baseline", "baselines"),
    ):
        for e in regs[key]:
            lines.append(_row([f"`{e.name}`", kind, e.paper or e.summary, _arxiv(e)]))
    return "\n".join(lines)


def update_readme(path: str) -> bool:
    """Rewrite the ``blocks`` section of a README in place; returns whether it changed."""
    from pathlib import Path

    start, end = "<!-- blocks:start -->", "<!-- blocks:end -->"
    readme = Path(path)
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} section")
    new = text[: text.index(start) + len(start)] + "\n" + markdown_table() + "\n" + text[text.index(end) :]
    if new != text:
        readme.write_text(new)
    return new != text
