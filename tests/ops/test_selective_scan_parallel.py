"""Loop-free selective scan (Mamba S6, arXiv:2312.00752) against the per-token loop; its operator count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mixerlab.ops.selective_scan import (
    selective_scan_chunk,
    selective_scan_parallel,
    selective_scan_reference,
)

NAMES = ["x", "dt", "A", "B", "C", "h0"]


def _inputs(T: int, batch: int = 2, E: int = 5, N: int = 3, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, E, generator=g, dtype=dtype)
    # dt over several orders of magnitude (as after training): some dt A far below the floor
    dt = F.softplus(3 * torch.randn(batch, T, E, generator=g, dtype=dtype))
    A = -torch.exp(torch.randn(E, N, generator=g, dtype=dtype))
    B = torch.randn(batch, T, N, generator=g, dtype=dtype)
    C = torch.randn(batch, T, N, generator=g, dtype=dtype)
    h0 = torch.randn(batch, E, N, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, dt, A, B, C, h0)]


def _check_grads(out, out_ref, inputs, rtol=1e-7, atol=1e-9):
    (y, h), (y_ref, h_ref) = out, out_ref
    g = torch.Generator().manual_seed(1)
    gy = torch.randn(y.shape, generator=g, dtype=y.dtype)
    gh = torch.randn(h.shape, generator=g, dtype=h.dtype)
    grads = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (h_ref * gh).sum(), inputs)
    for name, a, b in zip(NAMES, grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"grad {n}: {m}")


# T: one step, odd lengths inside one block, across blocks and across level-2 blocks (64 tokens)
@pytest.mark.parametrize("T", [1, 7, 33, 131])
@pytest.mark.parametrize(("block_size", "levels"), [(8, 2), (3, 1), (2, 3), (8, 0)])
@pytest.mark.parametrize("negative", [False, True])
def test_matches_reference_outputs_states_and_gradients(T, block_size, levels, negative):
    inputs = _inputs(T)
    x, dt, A, B, C, h0 = inputs
    kw = {"state": h0, "negative_eigenvalues": negative}
    out = selective_scan_parallel(x, dt, A, B, C, block_size=block_size, levels=levels, **kw)
    out_ref = selective_scan_reference(x, dt, A, B, C, **kw)
    torch.testing.assert_close(out[0], out_ref[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out[1], out_ref[1], rtol=1e-9, atol=1e-10)
    _check_grads(out, out_ref, inputs)


def test_without_state_and_split_calls_equal_one_call():
    x, dt, A, B, C, _ = _inputs(T=45)
    y, h = selective_scan_parallel(x, dt, A, B, C)
    y_ref, h_ref = selective_scan_reference(x, dt, A, B, C)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    # the final state of a first call is the initial state of the second
    y1, h1 = selective_scan_parallel(x[:, :20], dt[:, :20], A, B[:, :20], C[:, :20])
    y2, h2 = selective_scan_parallel(x[:, 20:], dt[:, 20:], A, B[:, 20:], C[:, 20:], state=h1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    torch.testing.assert_close(h2, h)


def test_gradient_of_the_final_state_alone():
    # y unused: autograd hands the backward a zero dy, and dh alone drives the adjoint
    inputs = _inputs(T=19)
    x, dt, A, B, C, h0 = inputs
    _, h = selective_scan_parallel(x, dt, A, B, C, state=h0)
    _, h_ref = selective_scan_reference(x, dt, A, B, C, state=h0)
    grads = torch.autograd.grad(h.sum(), inputs)
    grads_ref = torch.autograd.grad(h_ref.sum(), inputs, materialize_grads=True)  # C is unused: zero
    for name, a, b in zip(NAMES, grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("negative", [False, True])
def test_float32_strong_decays_stay_finite_and_as_accurate_as_the_loop(negative):
    # dt A down to about -1000 per step: far below the floor, where any rescaling by exp(-L) over
    # more than a block would overflow float32 (the values and the gradients must stay finite)
    x, dt, A, B, C, h0 = (t.detach().float() for t in _inputs(T=150, seed=3))
    dt = dt * 40
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C, h0)]
    assert (dt * A.abs().amax()).amax() > 100
    y, h = selective_scan_parallel(*inputs[:5], state=h0, negative_eigenvalues=negative)
    wide = [t.detach().double().requires_grad_() for t in inputs]
    y64, h64 = selective_scan_reference(*wide[:5], state=wide[5], negative_eigenvalues=negative)
    plain = (t.detach() for t in inputs[:5])
    y32, _ = selective_scan_reference(*plain, state=h0.detach(), negative_eigenvalues=negative)
    scale = y64.abs().max()
    assert (y.double() - y64).abs().max() <= 1e-4 * scale
    assert (y32.double() - y64).abs().max() <= 1e-4 * scale  # the bar is one the loop also meets
    gy = torch.randn_like(y)
    grads = torch.autograd.grad((y * gy).sum() + h.sum(), inputs)
    grads64 = torch.autograd.grad((y64 * gy.double()).sum() + h64.sum(), wide)
    for name, g, g64 in zip(NAMES, grads, grads64):
        assert torch.isfinite(g).all(), f"grad {name} is not finite"
        assert (g.double() - g64).abs().max() <= 1e-3 * (g64.abs().max() + 1), f"grad {name}"


def test_half_precision_runs_in_float32_and_returns_the_input_dtype():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(T=24, seed=4))
    half = [t.bfloat16() for t in (x, dt, A, B, C, h0)]
    y, h = selective_scan_parallel(*half[:5], state=half[5])
    assert y.dtype == h.dtype == torch.bfloat16
    y_ref, _ = selective_scan_reference(*(t.double() for t in half[:5]), state=half[5].double())
    torch.testing.assert_close(y.double(), y_ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(("field", "value"), [("block_size", 9), ("block_size", 0), ("levels", -1)])
def test_bad_sizes_name_the_field(field, value):
    x, dt, A, B, C, _ = (t.detach().float() for t in _inputs(T=4))
    with pytest.raises(ValueError, match=f"{field}={value}"):
        selective_scan_parallel(x, dt, A, B, C, **{field: value})


class _OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched while active, forward and autograd backward."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _operators(scan, T: int, **kwargs) -> int:
    inputs = [t.detach().requires_grad_() for t in _inputs(T, batch=1, E=2, N=2)[:5]]
    with _OperatorCount() as counter:
        y, h = scan(*inputs, **kwargs)
        (y.sum() + h.sum()).backward()
    return counter.count


@pytest.mark.parametrize("negative", [False, True])
def test_operator_count_grows_only_logarithmically_with_length(negative):
    # On a GPU every dispatched operator is at least one kernel launch, which sets the time of a
    # scan over small tensors; a loop over blocks makes the count grow linearly with T.
    kw = {"negative_eigenvalues": negative}
    counts = {T: _operators(selective_scan_parallel, T, **kw) for T in (256, 1024, 4096)}
    # only the top level's doubling rounds depend on T: the same few more per 4x longer input
    assert counts[4096] - counts[1024] == counts[1024] - counts[256]
    assert counts[1024] - counts[256] <= 0.15 * counts[256]
    blocked = {T: _operators(selective_scan_chunk, T, chunk_size=64, **kw) for T in (256, 1024)}
    assert blocked[1024] >= 3 * blocked[256]  # the blocked scan's loop: the proxy does measure it
    assert counts[1024] * 5 <= blocked[1024]
