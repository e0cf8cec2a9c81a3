"""ParaGRU over a whole sequence by Newton's method with parallel linear scans (the fast form).

"ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for Large Language Models"
(arXiv:2510.21450). The sequence ``h_t = f(h_{t-1}, x_t)`` is one system of equations
``F_t(h) = h_t - f(h_{t-1}, x_t) = 0``. A Newton step solves ``J_F delta = -F``; since ``J_F`` is
block-bidiagonal with diagonal blocks ``-A_t = -df/dh_{t-1}``, that is the *linear* recurrence

    delta_t = A_t delta_{t-1} + (f(h_{t-1}, x_t) - h_t),      delta_0 = 0,

solved for all ``t`` at once by a parallel (Hillis-Steele) scan,
:func:`mixerlab.ops.linear_scan.linear_scan_doubling`. Each step makes at least one more
position exact (position ``t`` is exact once ``t - 1`` is), so ``T`` iterations are exact in
exact arithmetic; in practice convergence is quadratic and takes a few.

Gradients use the implicit function theorem at the solution ``h*`` (as the paper does): with
``g = dL/dh*``, the adjoint ``lam`` solves the transposed system ``lam_t = g_t + A_{t+1} lam_{t+1}``
(the same scan run backwards), and ``dL/d(inputs) = lam . df/d(inputs)`` at ``h*``. In code: one
differentiable evaluation ``f(h*_{t-1}, x_t)`` for all ``t`` (with ``h*`` detached, so autograd
supplies the local derivatives), whose incoming gradient is replaced by ``lam``. No Newton
iteration is recorded for autograd.

Shapes: ``pre: [B, T, 3, N]``, ``A: [3, N]``, ``h0: [B, N]`` -> ``h: [B, T, N]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._higher_order_ops import while_loop

from mixerlab.ops.linear_scan import linear_scan_doubling
from mixerlab.ops.pararnn.recurrent import paragru_recurrent, paragru_recurrent_jacobian

# Steps per block of the parallel scan: Hillis-Steele rounds inside blocks of this many steps, the
# same scan over the block totals, then one pass adding each block's carry-in, i.e.
# ``log2(SCAN_BLOCK) + 1`` passes over the sequence instead of ``log2(T)``.
SCAN_BLOCK = 32


def _shift(h: Tensor, h0: Tensor) -> Tensor:
    """``[h0, h_0, ..., h_{T-2}]``: each step's previous state."""
    return torch.cat([h0[:, None], h[:, :-1]], dim=1)


def _newton_step(h: Tensor, pre: Tensor, A: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """One Newton update of the whole trajectory: ``(h + delta, max |delta|)`` (a 0-d tensor)."""
    f_val, jac = paragru_recurrent_jacobian(_shift(h, h0), pre, A)
    delta, _ = linear_scan_doubling(jac, f_val - h, chunk_size=SCAN_BLOCK)
    return h + delta, delta.abs().amax()


def _iterate_eager(
    h: Tensor, pre: Tensor, A: Tensor, h0: Tensor, tol: float, max_iters: int
) -> tuple[Tensor, int]:
    iters = 0
    for iters in range(1, max_iters + 1):
        h, step = _newton_step(h, pre, A, h0)
        step = step.item()
        if not math.isfinite(step):
            raise FloatingPointError(
                f"ParaRNN Newton iteration {iters} produced a non-finite update (the linearised "
                "recurrence overflowed); evaluate this layer with mode='reference' instead"
            )
        if step <= tol:
            break
    return h, iters


def _iterate_traced(
    h: Tensor, pre: Tensor, A: Tensor, h0: Tensor, tol: float, max_iters: int
) -> tuple[Tensor, Tensor]:
    """The same iteration as one ``while_loop`` node, so that torch.compile captures one graph.

    The stop test reads the update on the device instead of in Python: after the first step the
    loop runs on while fewer than ``max_iters`` steps were taken and the last update was finite
    and above ``tol`` (the eager loop's test, step for step). A non-finite update ends the loop
    and fails the ``_assert_async`` below: a RuntimeError with the eager message's substance,
    raised when the compiled graph runs (on a GPU, at the next synchronisation).
    """

    def running(iters: Tensor, h: Tensor, step: Tensor) -> Tensor:
        return (iters < max_iters) & ((iters == 0) | ((step > tol) & step.isfinite()))

    def update(iters: Tensor, h: Tensor, step: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h, step = _newton_step(h, pre, A, h0)
        return iters + 1, h, step

    iters = torch.zeros((), dtype=torch.int64, device=h.device)
    step = torch.zeros((), dtype=h.dtype, device=h.device)  # not read before the first update
    iters, h, step = while_loop(running, update, (iters, h, step))
    torch._assert_async(
        step.isfinite(),
        "ParaRNN Newton iteration produced a non-finite update (the linearised recurrence "
        "overflowed); evaluate this layer with mode='reference' instead",
    )
    return h, iters


@torch.no_grad()
def newton_solve(
    pre: Tensor, A: Tensor, h0: Tensor, *, tol: float | None = None, max_iters: int | None = None
) -> tuple[Tensor, Tensor, int | Tensor]:
    """Solve ``h_t = f(h_{t-1}, x_t)`` for all ``t``; returns ``(h*, A_t at h*, iterations)``.

    Eagerly the iterations are a Python loop (an ``int``; a non-finite update raises
    FloatingPointError); under torch.compile they are one ``while_loop`` (a 0-d tensor; a
    non-finite update fails an on-device assertion, a RuntimeError).
    """
    T = pre.shape[1]
    tol = torch.finfo(pre.dtype).eps ** 0.5 if tol is None else tol
    max_iters = T if max_iters is None else max_iters
    # Initial guess (the authors'): every step evaluated from a zero previous state, except the
    # first, which sees the true h0 and so is exact from the start.
    h = paragru_recurrent(_shift(torch.zeros_like(pre[:, :, 0]), h0), pre, A)
    iterate = _iterate_traced if torch.compiler.is_compiling() else _iterate_eager
    h, iters = iterate(h, pre, A, h0, tol, max_iters)
    _, jac = paragru_recurrent_jacobian(_shift(h, h0), pre, A)
    return h, jac, iters


class _ImplicitAdjoint(torch.autograd.Function):
    """Identity forward; backward turns ``dL/dh*`` into the adjoint ``lam`` (see module doc)."""

    @staticmethod
    def forward(ctx, h: Tensor, jac: Tensor) -> Tensor:
        ctx.save_for_backward(jac)
        return h.view_as(h)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (jac,) = ctx.saved_tensors
        # lam_t = g_t + A_{t+1} lam_{t+1}: a forward scan on the time-reversed sequence.
        a_next = F.pad(jac[:, 1:], (0, 0, 0, 1))
        lam = linear_scan_doubling(a_next.flip(1), grad.flip(1), chunk_size=SCAN_BLOCK)[0].flip(1)
        return lam, None


def pararnn_newton(
    pre: Tensor,
    A: Tensor,
    h0: Tensor | None = None,
    *,
    tol: float | None = None,
    max_iters: int | None = None,
) -> tuple[Tensor, int | Tensor]:
    """``(h [B, T, N], Newton iterations used)``; ``tol`` defaults to ``sqrt(eps)`` of the dtype
    (the following quadratic step is then at rounding level), ``max_iters`` to ``T`` (exact).
    The iteration count is an ``int``, a 0-d tensor under torch.compile (see :func:`newton_solve`)."""
    B, T, _, N = pre.shape
    h0 = pre.new_zeros(B, N) if h0 is None else h0
    if T == 0:
        return pre.new_zeros(B, 0, N), 0
    h_star, jac, iters = newton_solve(pre.detach(), A.detach(), h0.detach(), tol=tol, max_iters=max_iters)
    # One differentiable evaluation at the solution: equal to h* (to rounding), and its graph
    # holds the local derivatives df/d(pre, A, h0) that the adjoint weights.
    h_prev = torch.cat([h0[:, None], h_star[:, :-1]], dim=1)
    z = torch.sigmoid(pre[:, :, 0] + A[0] * h_prev)
    r = torch.sigmoid(pre[:, :, 1] + A[1] * h_prev)
    c = torch.tanh(pre[:, :, 2] + A[2] * (r * h_prev))
    h = h_prev + z * (c - h_prev)
    return _ImplicitAdjoint.apply(h, jac), iters
