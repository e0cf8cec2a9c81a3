"""What is registered: one line per entry, and the README table of token mixers."""

from __future__ import annotations

from mixerlab.errors import check_choice
from mixerlab.registry import CHANNEL_MIXERS, MODELS, NORMS, TASKS, TOKEN_MIXERS, Registry


def registries() -> dict[str, Registry]:
    import mixerlab.tasks  # noqa: F401  (importing mixerlab registers blocks/models; this, the tasks)

    return {
        "mixers": TOKEN_MIXERS,
        "channel_mixers": CHANNEL_MIXERS,
        "norms": NORMS,
        "models": MODELS,
        "tasks": TASKS,
    }


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


def markdown_table() -> str:
    """The README block: one row per token mixer with its paper, arXiv id and ``meta`` costs."""
    regs = registries()
    rows = [
        "| name | paper | arXiv | state size | time | memory |",
        "|---|---|---|---|---|---|",
    ]
    for e in regs["mixers"]:
        arxiv = f"[{e.arxiv}](https://arxiv.org/abs/{e.arxiv})" if e.arxiv else ""
        meta = e.meta
        cells = [
            f"`{e.name}`",
            e.paper,
            arxiv,
            str(meta.get("state", "")),
            str(meta.get("time", "")),
            str(meta.get("memory", "")),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)
