"""fla's kernels themselves, on a CPU: every mapping of mixerlab/ops/backends/fla.py calls fla's
real Triton kernel, run by Triton's interpreter, against mixerlab's float64 per-step reference.

The mapping tests (test_backends_fla.py, test_backends_fla_recurrent.py) put fla's pure-PyTorch
references in place of the kernels, through adapters that translate a kernel's signature to its
reference's; they check the conventions but not the kernels' own entry points (argument names and
order, the dtypes and layouts they accept, their chunking across tiles, their backward). Here the
kernels run as written, in float32 through ``TRITON_INTERPRET=1`` (about a minute for all), at a
length of 80, which crosses fla's 64-token chunk, with an initial state wherever the op takes one:
outputs, final states and the gradients of every input, the state included. The interpreter
computes ``tl.dot`` in float32 (no TF32 as on a GPU), so the bound is float32's, far below what a
wrong convention gives. The GPU check runs the same kernels compiled (``test_backends_fla.py``).

What the interpreter cannot check: 16-bit inputs (its bfloat16 arithmetic is wrong: the float32
cases here read errors of 1e10 in bfloat16), hence not ``chunk_delta_rule``, which refuses
float32 (that refusal is checked, as the reason the layer sends it 16-bit inputs only).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("fla") is None or importlib.util.find_spec("triton") is None,
    reason="needs fla-core and Triton (pip install 'mixerlab[test]' on Linux x86-64)",
)
B, T, H, K, V = 2, 80, 2, 16, 8
BOUND = 1e-4  # relative (norm) error; float32 rounding of these sizes is near 1e-6


def _cases() -> dict[str, tuple]:
    """``name: (mapping call, reference call, float64 inputs)``, built in the child process."""
    from mixerlab.ops.backends import fla as backend
    from mixerlab.ops.comba import comba_reference
    from mixerlab.ops.delta_rule import delta_rule_reference
    from mixerlab.ops.gsa import gsa_reference
    from mixerlab.ops.kda import kda_reference
    from mixerlab.ops.linear_attention import linear_attention_reference
    from mixerlab.ops.linear_scan import linear_scan_reference
    from mixerlab.ops.log_linear import log_linear_reference
    from mixerlab.ops.rwkv6 import rwkv6_reference
    from mixerlab.ops.rwkv7 import rwkv7_reference
    from mixerlab.ops.selective_scan import selective_scan_reference
    from mixerlab.ops.ssd import ssd_reference

    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def gate(*shape, shift=3.0):  # log decays in (-inf, 0), mostly mild
        return F.logsigmoid(rand(*shape) + shift)

    def unit(*shape):
        return F.normalize(rand(*shape), dim=-1)

    q, k, v = rand(B, T, H, K), rand(B, T, H, K) * K**-0.5, rand(B, T, H, V)
    S0 = rand(B, H, K, V)
    beta = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    cases = {}
    for decay, log_decay in (("none", None), ("head", gate(B, T, H)), ("channel", gate(B, T, H, K))):
        cases[f"linear_attention/{decay}"] = (
            backend.linear_attention_fla,
            lambda q, k, v, d, s: linear_attention_reference(q, k, v, d, initial_state=s),
            (q, k, v, log_decay, S0),
        )
    # odd sizes (Based's 1 + F + F^2 features, the normaliser column) go through the even padding
    cases["linear_attention/odd"] = (
        backend.linear_attention_fla,
        lambda q, k, v, d, s: linear_attention_reference(q, k, v, d, initial_state=s),
        (q[..., :7], k[..., :7], v[..., :5], gate(B, T, H), S0[..., :7, :5]),
    )
    qn, kn = unit(B, T, H, K), unit(B, T, H, K)
    cases["delta_rule"] = (  # refused: fla's ungated chunk_delta_rule takes 16-bit inputs only
        lambda q, k, v, b, s: backend.delta_rule_fla(q, k, v, b, state=s),
        lambda q, k, v, b, s: delta_rule_reference(q, k, v, b, state=s),
        (qn, kn, v, 2 * beta, S0),  # beta in [0, 2]: negative eigenvalues
    )
    cases["gated_delta_rule"] = (
        lambda q, k, v, b, d, s: backend.delta_rule_fla(q, k, v, b, d, state=s),
        lambda q, k, v, b, d, s: delta_rule_reference(q, k, v, b, d, state=s),
        (qn, kn, v, beta, gate(B, T, H), S0),
    )
    cases["kda"] = (
        lambda q, k, v, b, d, s: backend.delta_rule_fla(q, k, v, b, d, state=s),
        lambda q, k, v, b, d, s: kda_reference(q, k, v, d, b, state=s),
        (qn, kn, v, beta, gate(B, T, H, K), S0),
    )
    E, N = 6, 4
    A = -torch.rand(E, N, generator=g, dtype=torch.float64) * 2
    dt = torch.rand(B, T, E, generator=g, dtype=torch.float64) * 0.5
    cases["selective_scan"] = (
        lambda *a: backend.selective_scan_fla(*a[:5], state=a[5]),
        lambda *a: selective_scan_reference(*a[:5], state=a[5]),
        (rand(B, T, E), dt, A, rand(B, T, N), rand(B, T, N), rand(B, E, N)),
    )
    P = 4
    cases["ssd"] = (
        lambda *a: backend.ssd_fla(*a[:5], state=a[5]),
        lambda *a: ssd_reference(*a[:5], state=a[5]),
        (
            rand(B, T, H, P),
            torch.rand(B, T, H, generator=g, dtype=torch.float64) * 0.5,
            -torch.rand(H, generator=g, dtype=torch.float64) * 2,
            rand(B, T, N),
            rand(B, T, N),
            rand(B, H, P, N),
        ),
    )
    cases["rwkv6"] = (
        lambda r, k, v, w, u, s: backend.rwkv6_fla(r, k, v, w, u, initial_state=s),
        lambda r, k, v, w, u, s: rwkv6_reference(r, k, v, w, u, initial_state=s),
        (q, k, v, gate(B, T, H, K), rand(H, K), S0),
    )
    D = 5
    theta = torch.tensor([1e-4, 0.3, 1.0, 2.5, 7.0], dtype=torch.float64)

    def hgrn_reference(log_decay, b, h0):
        return linear_scan_reference(torch.polar(log_decay.exp(), theta.expand_as(log_decay)), b, h0)

    hgrn_inputs = (gate(B, T, D), torch.complex(rand(B, T, D), rand(B, T, D)))
    h0 = torch.complex(rand(B, D), rand(B, D))
    # chunk_hgrn (its backward leaves the initial state without a gradient: a constant one here)
    cases["hgrn/chunk"] = (
        lambda d, b: backend.hgrn_fla(d, theta.float(), b, h0.to(torch.complex64)),
        lambda d, b: hgrn_reference(d, b, h0),
        hgrn_inputs,
    )
    # fused_recurrent_hgrn, taken when the initial state needs a gradient
    cases["hgrn/fused_recurrent"] = (
        lambda d, b, s: backend.hgrn_fla(d, theta.float(), b, s),
        hgrn_reference,
        (*hgrn_inputs, h0),
    )
    floor = 0.6
    kappa, a = unit(B, T, H, K), torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    cases["rwkv7"] = (
        lambda r, w, k, v, kappa, a, s: backend.dplr_fla(
            r, w, k, v, -kappa, kappa * a, state=s, min_log_decay=-floor
        ),
        lambda r, w, k, v, kappa, a, s: rwkv7_reference(r, w, k, v, kappa, a, state=s),
        (q, -floor * torch.rand(B, T, H, K, generator=g, dtype=torch.float64), k, v, kappa, a, S0),
    )
    p = 0.7 * kn
    cases["comba"] = (
        lambda q, k, v, p, b, d, s: backend.comba_fla(q, k, v, p, b, d, state=s),
        lambda q, k, v, p, b, d, s: comba_reference(q, k, v, p, b, d, state=s),
        (qn - 0.5 * p, kn, v, p, beta, gate(B, T, H), S0),
    )
    M = 5
    cases["gsa"] = (
        lambda q, k, v, d, ks, vs: backend.gsa_fla(q, k, v, d, key_slots=ks, value_slots=vs),
        lambda q, k, v, d, ks, vs: gsa_reference(q, k, v, d, key_slots=ks, value_slots=vs),
        (q, k, v, gate(B, T, H, M, shift=1.0), rand(B, H, M, K), rand(B, H, M, V)),
    )
    # the kernel takes a power-of-two value width and keys in whole 64-wide blocks
    N_ll, L = 64, 8
    cases["log_linear"] = (
        backend.log_linear_fla,
        log_linear_reference,
        (
            rand(B, T, H, P),
            torch.rand(B, T, H, generator=g, dtype=torch.float64) * 0.5,
            -torch.rand(H, generator=g, dtype=torch.float64),
            rand(B, T, N_ll) * N_ll**-0.5,
            rand(B, T, N_ll) * N_ll**-0.5,
            torch.rand(B, T, H, L, generator=g, dtype=torch.float64) * 2,
        ),
    )
    return cases


@needs_triton
@pytest.mark.slow
def test_fla_kernels_in_tritons_interpreter_match_the_reference(run_in_triton_interpreter):
    worst = run_in_triton_interpreter(__file__)
    refusal = worst.pop("delta_rule")
    assert isinstance(refusal, str) and "float32" in refusal, refusal
    failed = {name: error for name, error in worst.items() if isinstance(error, str) or error >= BOUND}
    assert not failed, failed
    assert len(worst) == 15


if __name__ == "__main__":  # the child process (the interpreter needs TRITON_INTERPRET at import)
    import _triton_interpreter

    _triton_interpreter.main(_cases)
