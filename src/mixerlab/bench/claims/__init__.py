"""Papers' claims reproduced at toy scale as pass/fail experiments (``mixerlab claims``).

Each claim names its paper and arXiv id, states the claim in one sentence, fixes its threshold
in code before any run, and measures figures with a seeded, fixed-step experiment on CPU-sized
models. One module per group of claims: ``recall`` (MQAR: Zoology, Based, GLA, DeltaNet, hybrids,
sliding windows), ``state`` (negative eigenvalues on parity, minGRU/minLSTM depth) and ``blocks``
(DyT, KAN, NAC/NALU, Switch MoE). Importing this package registers them all in :data:`CLAIMS`.

    from mixerlab.bench.claims import run_claims, select_claims
    results = run_claims(select_claims(["negative_eigenvalues_parity"]), out="runs/claims")
"""

from mixerlab.bench.claims import blocks as _blocks  # noqa: F401  (registers the claims)
from mixerlab.bench.claims import recall as _recall  # noqa: F401
from mixerlab.bench.claims import state as _state  # noqa: F401
from mixerlab.bench.claims.base import (
    CLAIMS,
    Claim,
    ClaimResult,
    Measurement,
    Plot,
    Threshold,
    register_claim,
    verdict,
)
from mixerlab.bench.claims.runner import (
    list_claims,
    run_claim,
    run_claims,
    select_claims,
    store_row,
    write_plot,
    write_report,
)

__all__ = [
    "CLAIMS",
    "Claim",
    "ClaimResult",
    "Measurement",
    "Plot",
    "Threshold",
    "list_claims",
    "register_claim",
    "run_claim",
    "run_claims",
    "select_claims",
    "store_row",
    "verdict",
    "write_plot",
    "write_report",
]
