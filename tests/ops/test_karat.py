"""KArAt ops: the tiled fast form (one sine and cosine per score, harmonics by recurrence, a
recomputing backward) equals the per-query reference in float64, outputs and every gradient, over
tiles that cut the diagonal, grouped heads, a key/value cache, no causality and padded keys; in
float32 the recurrence stays close to direct sines and cosines at many frequencies."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.karat import karat_parallel, karat_reference


def _inputs(T: int, S: int, H: int, G: int, F: int, dtype=torch.float64, seed: int = 0, scale: float = 1.5):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return (s * torch.randn(*shape, generator=g, dtype=dtype)).requires_grad_()

    # scores of a few units: many periods of the higher harmonics
    q, k, v = r(2, T, H, 4, s=scale), r(2, S, G, 4, s=scale), r(2, S, G, 3)
    return q, k, v, r(H, 2 * F, s=0.5), r(H)


@pytest.mark.parametrize(
    ("T", "S", "H", "G", "F", "causal", "padded", "blocks"),
    [
        (13, 13, 2, 2, 4, True, False, (4, 3)),  # tiles cut the diagonal at every offset
        (13, 13, 4, 2, 1, True, False, (5, 8)),  # grouped heads, one frequency
        (5, 11, 2, 1, 3, True, False, (2, 4)),  # queries continue a cache of 6 keys
        (9, 9, 2, 2, 5, False, True, (4, 4)),  # bidirectional with padded keys
        (9, 9, 2, 2, 2, True, True, (64, 256)),  # one tile, causal and padded
    ],
)
def test_fast_form_matches_reference(T, S, H, G, F, causal, padded, blocks):
    q, k, v, coefficients, bias = _inputs(T, S, H, G, F)
    key_mask = None
    if padded:
        key_mask = torch.ones(2, S, dtype=torch.bool)
        key_mask[0, :3] = False
        key_mask[1, -2:] = False
    leaves = (q, k, v, coefficients, bias)
    d_out = torch.randn(2, T, H, 3, dtype=torch.float64)
    results = []
    for fn, extra in ((karat_reference, {}), (karat_parallel, {"block_sizes": blocks})):
        o = fn(q, k, v, coefficients, bias, eps=1e-3, causal=causal, key_mask=key_mask, **extra)
        results.append((o, torch.autograd.grad((o * d_out).sum(), leaves)))
    (o_ref, g_ref), (o, g) = results
    torch.testing.assert_close(o, o_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("F", [4, 16])
def test_float32_recurrence_stays_close_to_direct_trig(F):
    """The harmonic recurrence's rounding in float32, against float64, at scores up to about 20:
    within a small factor of float32 with direct sines and cosines. Rows are kept far from a zero
    l1 norm (a large constant term) so that the error measured is the function's, not the norm's."""
    q, k, v, coefficients, bias = (t.detach() for t in _inputs(64, 64, 2, 2, F, scale=2.0, seed=1))
    coefficients, bias = coefficients / F**0.5, bias.abs() + 3.0
    exact = karat_reference(q, k, v, coefficients, bias)
    args32 = [t.float() for t in (q, k, v, coefficients, bias)]
    err_fast = (karat_parallel(*args32, block_sizes=(16, 32)).double() - exact).abs().max()
    err_direct = (karat_reference(*args32).double() - exact).abs().max()
    assert err_fast <= 4 * err_direct and err_fast < 1e-5, (err_fast, err_direct)
