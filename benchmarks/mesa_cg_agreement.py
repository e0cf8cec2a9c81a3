"""How closely flash-linear-attention's conjugate-gradient MesaNet agrees with mixerlab's exact solve.

MesaNet (arXiv:2506.05233) reads ``o_t = ((H^kk_t + Lambda)^-1 q_t)^T H^kv_t``. mixerlab's
:func:`mixerlab.ops.mesa.mesa_chunk` solves each system exactly (Cholesky); fla's
``chunk_mesa_net`` runs a fixed number of conjugate-gradient steps, whose algorithm and ``1e-5``
step-size guards its pure-PyTorch ``naive_mesa_net_CG`` shares. This prints the relative error
(norm) of that reference against mixerlab's op for a few sizes, decays and regularisers, which is
why ``mesanet`` has no fla backend (see :mod:`mixerlab.ops.backends.fla`). CPU only, seconds.

    PYTHONPATH=src python benchmarks/mesa_cg_agreement.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from mixerlab.ops.mesa import mesa_chunk


def _fla_naive_mesa():
    spec = importlib.util.find_spec("fla")
    if spec is None:
        raise SystemExit("flash-linear-attention is not installed")
    path = Path(spec.submodule_search_locations[0]) / "ops" / "mesa_net" / "naive.py"
    module_spec = importlib.util.spec_from_file_location("_fla_mesa_naive", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def main() -> None:
    naive = _fla_naive_mesa()
    g = torch.Generator().manual_seed(0)
    print("| K | T | lambda | decay bias | CG steps | relative error | max abs error |")
    print("|---|---|---|---|---|---|---|")
    for K, T, lam_value, decay_bias in [(64, 256, 1.0, 0.0), (64, 256, 1.0, 3.0), (64, 512, 0.25, 5.0)]:
        B, H = 1, 2
        q = F.normalize(torch.randn(B, T, H, K, generator=g, dtype=torch.float64), dim=-1)
        k = F.normalize(torch.randn(B, T, H, K, generator=g, dtype=torch.float64), dim=-1)
        v = torch.randn(B, T, H, K, generator=g, dtype=torch.float64)
        # a positive bias keeps the decay near 1, so H^kk grows large and ill-conditioned
        log_decay = F.logsigmoid(torch.randn(B, T, H, generator=g, dtype=torch.float64) + decay_bias)
        beta = torch.sigmoid(torch.randn(B, T, H, generator=g, dtype=torch.float64))
        lam = torch.full((H, K), lam_value, dtype=torch.float64)
        exact, _ = mesa_chunk(q, k, v, log_decay, beta, lam, chunk_size=64)
        for steps in (30, K):  # fla's default, and as many steps as unknowns
            approx, _, _ = naive.naive_mesa_net_CG(
                q, k, v, log_decay, lam.float(), beta, 64, max_CG_iteration=steps
            )
            diff = approx.double() - exact
            print(
                f"| {K} | {T} | {lam_value} | {decay_bias} | {steps} | "
                f"{(diff.norm() / exact.norm()).item():.1e} | {diff.abs().max().item():.1e} |"
            )


if __name__ == "__main__":
    main()
