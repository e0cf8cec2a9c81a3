"""What the backend tests (``test_backends_*.py``) share: the check of a kernel library's kernels
themselves on a GPU against mixerlab's per-step reference, and the run of fla's kernels on a CPU
in Triton's interpreter.

With ``--import-mode=importlib`` a test module cannot import this file, so both are handed out by
fixtures, :func:`kernels_match_reference_on_cuda` and :func:`run_in_triton_interpreter`.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
import torch

import mixerlab


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``|actual - expected| / |expected|`` in Frobenius norm, in float64 on the CPU."""
    actual, expected = actual.detach().cpu().double(), expected.detach().cpu().double()
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


@pytest.fixture
def run_in_triton_interpreter() -> Callable[[str], dict[str, float | str]]:
    """``run(path)``: the test file ``path`` run as a child process with ``TRITON_INTERPRET=1``
    (which Triton reads at import, hence a fresh process); its ``__main__`` hands its cases to
    ``_triton_interpreter.main``, and this returns what that printed: each case's worst relative
    error, or the error it raised as a string. fla's dispatch to other kernel libraries (TileLang)
    is switched off: they have no interpreter."""

    def run(path: str) -> dict[str, float | str]:
        env = {
            **os.environ,
            "TRITON_INTERPRET": "1",
            "OMP_NUM_THREADS": "1",
            "FLA_DISABLE_BACKEND_DISPATCH": "1",
        }
        done = subprocess.run(
            [sys.executable, path], env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture
def kernels_match_reference_on_cuda(monkeypatch) -> Callable[..., None]:
    """``check(name, options, *, backend, spies, ...)``: the mixer ``name`` built with ``options``
    runs its fast mode on the ``backend`` library's kernels on CUDA and must match the same mixer's
    per-step reference in float64 on the CPU: outputs, final state, input and parameter gradients,
    each within ``bound`` in relative (norm) error. ``spies`` are the ``(module, function)`` through
    which the backend reaches its kernels; each call is recorded and ``expected_calls`` (or any
    call, when ``None``) must be among them, so a silent fallback to mixerlab's path fails. The
    input is ``[2, length, dim]``; with ``split`` the fast mixer runs twice, the second call
    continuing from the first one's state. Skipped without a CUDA device."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (the kernels run on GPUs only)")

    def check(
        name: str,
        options: dict,
        *,
        backend: str,
        spies: list[tuple[ModuleType, str]],
        length: int = 150,
        split: int | None = 70,
        dtype: torch.dtype = torch.float32,
        bound: float = 1e-2,
        expected_calls: str | None = None,
    ) -> None:
        calls: list[str] = []
        for module, function in spies:
            real = getattr(module, function)

            def spy(*args, _real=real, _function=function, **kwargs):
                calls.append(args[0] if args and isinstance(args[0], str) else _function)
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, function, spy)
        torch.manual_seed(0)
        ref = mixerlab.create_token_mixer(name, **options).double()
        ref.mode = "reference"
        fast = copy.deepcopy(ref).to("cuda", dtype)
        fast.mode = fast.modes[0]
        fast.backend = backend
        x = torch.randn(2, length, ref.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        x_ref, x_fast = x.clone().requires_grad_(), x.to("cuda", dtype).requires_grad_()
        y_ref, s_ref = ref(x_ref)
        if split is None:
            y_fast, s_fast = fast(x_fast)
        else:
            y1, s1 = fast(x_fast[:, :split])
            y2, s_fast = fast(x_fast[:, split:], state=s1)
            y_fast = torch.cat([y1, y2], dim=1)
        assert calls, f"{backend}'s kernels were not called"
        assert expected_calls is None or expected_calls in calls, calls
        assert relative_error(y_fast, y_ref) < bound
        for key in s_ref:
            assert relative_error(s_fast[key], s_ref[key]) < bound, key
        grad = torch.randn_like(x)
        y_ref.backward(grad)
        y_fast.backward(grad.to("cuda", dtype))
        assert relative_error(x_fast.grad, x_ref.grad) < bound
        for (pname, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters(), strict=True):
            assert relative_error(p_fast.grad, p_ref.grad) < bound, pname

    return check
