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
        _row(["name", "paper", "arXiv", "state size", "time", "memory", "modes"]),
        "|---|---|---|---|---|---|---|",
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
