"""Terminal output shared by the commands: a compact results table (rich) and where the report is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer


def print_table(title: str, columns: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    """One rich table on stdout: first column left-aligned, numbers right-aligned."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left"
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 or name == "ended by" else "right")
    from rich.markup import escape

    for row in rows:
        # Run labels hold brackets ("attention [model=patchtst]") that rich would read as markup.
        table.add_row(*(escape(cell) for cell in row))
    # Piped or captured output has no terminal width; a fixed one keeps rows on one line.
    Console(width=None if sys.stdout.isatty() else 160, highlight=False).print(table)


def print_leaderboard(title: str, rows: list[dict[str, Any]], group_by: list[str] | None = None) -> None:
    """The best-of-lr leaderboard of store rows (see :func:`mixerlab.bench.report.leaderboard`)."""
    from mixerlab.bench.report import leaderboard, terminal_table

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for task in tasks:  # metrics of different tasks are never ranked together
        entries = leaderboard([r for r in rows if r["task"] == task], group_by)
        if not entries:
            continue
        higher = "higher" if entries[0].higher_is_better else "lower"
        metric = f"{entries[0].metric_name} ({higher} is better)"
        where = f" on {task}" if len(tasks) > 1 else ""
        columns, cells = terminal_table(entries)
        caption = "best lr per model and width; ± is the std over seeds"
        print_table(f"{title}{where}: {metric}", columns, cells, caption)


def print_report_location(html: str | Path) -> None:
    """The report's path and how to look at it on a machine without a desktop."""
    folder = Path(html).resolve().parent
    typer.echo(f"report: {Path(html).resolve()}")
    typer.echo(
        f"  no desktop? run `python -m http.server 8000 --directory {folder}` and open "
        "http://localhost:8000/report.html (from another machine: ssh -L 8000:localhost:8000 <this host>)"
    )
