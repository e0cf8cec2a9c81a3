"""``mixerlab claims``: papers' claims reproduced at toy scale as pass/fail experiments (bench/claims/)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from mixerlab.cli.app import app


@app.command()
def claims(
    quick: Annotated[
        bool, typer.Option("--quick", help="Only the fast subset (minutes on 2 cores; what CI runs).")
    ] = False,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated claim names (see --list); default: all.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder; the report goes to <out>/claims/report.html.")
    ] = Path("mixerlab-runs"),
    store: Annotated[
        str | None,
        typer.Option(help="Results store, SQLite path or database URL (default <out>/results.sqlite)."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per claim (figures are averaged over them).")] = 1,
    workers: Annotated[
        int, typer.Option(help="Claims run side by side in this many processes (one thread each).")
    ] = 2,
    list_only: Annotated[bool, typer.Option("--list", help="List the claims and exit.")] = False,
) -> None:
    """Run each claim's fixed-budget experiment, judge it against its fixed threshold, report pass/fail."""
    from mixerlab.bench.claims import list_claims, run_claims, select_claims
    from mixerlab.cli._table import print_report_location, print_table
    from mixerlab.errors import ConfigError

    if seeds < 1:
        raise ConfigError("claims", "seeds", seeds, "expected a positive integer")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    chosen = select_claims(names, quick=quick)
    if list_only:
        cells = [
            [c.name, f"{c.paper[:48]} (arXiv:{c.arxiv})", c.threshold_text, "yes" if c.quick else ""]
            for c in (chosen if names else list_claims(quick=quick))
        ]
        print_table("claims", ["claim", "paper", "threshold", "quick"], cells)
        return
    if not chosen:
        raise ConfigError("claims", "only", only, "none of these claims is in the --quick subset")
    folder = out / "claims"
    store_path = store if store is not None else str(out / "results.sqlite")
    start = time.perf_counter()
    results = run_claims(chosen, seeds=seeds, out=folder, store=store_path, log=typer.echo, workers=workers)
    cells = [
        [
            r.claim.name,
            f"arXiv:{r.claim.arxiv}",
            r.measured_text if not r.error else "error",
            r.claim.threshold_text,
            r.status,
        ]
        for r in results
    ]
    passed = sum(r.passed for r in results)
    title = f"claims: {passed} of {len(results)} hold ({time.perf_counter() - start:.0f}s)"
    print_table(title, ["claim", "paper", "measured", "threshold", "result"], cells)
    typer.echo(f"store: {store_path} (sweep 'claims')")
    print_report_location(folder / "report.html")
