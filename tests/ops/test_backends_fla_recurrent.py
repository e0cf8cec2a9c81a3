"""The flash-linear-attention backend for the recurrent and delta-rule family (HGRN, KDA, RWKV-7,
...): the mapping of conventions in mixerlab/ops/backends/fla.py, checked on the CPU.

As in test_backends_fla.py, fla's pure-PyTorch references stand in for its Triton kernels through
adapters that only translate a kernel's call signature to its reference's; each mapping function
must then equal mixerlab's own per-step reference (outputs and final states, with and without an
initial state), and a deliberately wrong convention must not. fla's references compute in float32,
hence float32 tolerances. The layer tests route whole mixers through the mapping and compare with
the same mixers on mixerlab's path, outputs, states and input gradients across two calls.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.backends import fla as backend
from mixerlab.ops.comba import comba_reference
from mixerlab.ops.deltaproduct import deltaproduct_reference
from mixerlab.ops.gsa import gsa_reference
from mixerlab.ops.kda import kda_reference
from mixerlab.ops.linear_scan import linear_scan_reference
from mixerlab.ops.log_linear import log_linear_chunk, log_linear_reference
from mixerlab.ops.rwkv7 import rwkv7_reference


def _naive(op: str, filename: str = "naive") -> ModuleType | None:
    """``fla/ops/<op>/<filename>.py`` loaded by path, without ``import fla.ops`` (which imports
    every Triton kernel): these references need only torch."""
    spec = importlib.util.find_spec("fla")
    if spec is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "ops" / op / f"{filename}.py"
    module_spec = importlib.util.spec_from_file_location(f"_fla_{op.replace('/', '_')}_{filename}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


HGRN, KDA, DPLR = _naive("hgrn"), _naive("kda"), _naive("generalized_delta_rule/dplr")
COMBA, DELTAPRODUCT, GSA = _naive("comba"), _naive("gated_delta_product"), _naive("gsa")
LOG_LINEAR = _naive("log_linear_attn")
needs_fla = pytest.mark.skipif(HGRN is None, reason="flash-linear-attention is not installed")
TOL = {"rtol": 2e-4, "atol": 2e-5}  # float32 rounding of fla's references
B, T, H = 2, 19, 3


def hgrn_as_kernel(x, g, initial_state=None, output_final_state=False):
    """``chunk_hgrn``'s (and ``fused_recurrent_hgrn``'s) signature on ``naive_recurrent_hgrn``."""
    return HGRN.naive_recurrent_hgrn(x, g, initial_state, output_final_state)


def kda_as_kernel(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """``chunk_kda``'s signature is ``naive_recurrent_kda``'s."""
    return KDA.naive_recurrent_kda(q, k, v, g, beta, scale, initial_state, output_final_state)


def rwkv7_as_kernel(
    r, w, k, v, a, b, scale=1.0, initial_state=None, output_final_state=False, lower_bound=None
):
    """``chunk_rwkv7``'s signature on ``dplr_recurrence`` (head-first, scale fixed at ``K^-1/2``);
    ``lower_bound`` only licenses a faster kernel schedule, so the reference checks it holds."""
    assert lower_bound is None or bool((w >= lower_bound).all())
    K = r.shape[-1]
    r, w, k, v, a, b = (t.transpose(1, 2) for t in (r * (scale * K**0.5), w, k, v, a, b))
    # the reference casts every input to float32 but ``a`` (a caller in float64 would mix dtypes)
    o, S = DPLR.dplr_recurrence(r, k, v, a.float(), b, w, initial_state, output_final_state)
    return o.transpose(1, 2), S


def comba_as_kernel(q, k, v, p, g, beta, scale=None, initial_state=None, output_final_state=False):
    """``chunk_comba``'s ``(p, g, beta)`` on ``naive_recurrent_comba``'s ``(p, beta, g)``. The
    kernel reads ``p^T S_{t-1}`` before the decay, the naive reference after it (the interpreter
    test, test_backends_fla_interpreted.py, runs the kernel itself): the kernel's ``p`` is the
    reference's ``exp(g) p``."""
    p = p * (-g).exp().unsqueeze(-1)
    return COMBA.naive_recurrent_comba(q, k, v, p, beta, g, scale, initial_state, output_final_state)


def deltaproduct_as_kernel(
    q, k, v, g, beta, num_householder, scale=None, initial_state=None, output_final_state=False
):
    """``chunk_gated_delta_product``'s signature on ``naive_recurrent_gated_delta_product``."""
    return DELTAPRODUCT.naive_recurrent_gated_delta_product(
        q,
        k,
        v,
        g,
        beta,
        scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        num_householder=num_householder,
    )


def gsa_as_kernel(q, k, v, s, g=None, scale=None, initial_state=None, output_final_state=False):
    """``chunk_gsa``'s signature is ``naive_recurrent_gsa``'s."""
    return GSA.naive_recurrent_gsa(q, k, v, s, g, scale, initial_state, output_final_state)


def log_linear_as_kernel(
    q, k, v, g, level_scales, initial_state=None, output_final_state=False, cu_seqlens=None, scale=1.0
):
    """``chunk_log_linear_attn``'s signature on ``naive_log_linear_attn`` (outputs only; the
    mapping never asks for fla's state)."""
    assert initial_state is None and not output_final_state
    return LOG_LINEAR.naive_log_linear_attn(q, k, v, g, level_scales, scale=scale), None


KERNELS = {
    "chunk_hgrn": hgrn_as_kernel,
    "fused_recurrent_hgrn": hgrn_as_kernel,
    "chunk_kda": kda_as_kernel,
    "chunk_rwkv7": rwkv7_as_kernel,
    "chunk_comba": comba_as_kernel,
    "chunk_gated_delta_product": deltaproduct_as_kernel,
    "chunk_gsa": gsa_as_kernel,
    "chunk_log_linear_attn": log_linear_as_kernel,
}


def rand(*shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(actual, expected, **TOL)


# --- HGRN -------------------------------------------------------------------------------------


def _hgrn_inputs(with_state: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    D = 5
    log_decay = -torch.rand(B, T, D, generator=g, dtype=torch.float64)
    # phases of all sizes, from rotary-like small ones to several turns per step
    theta = torch.tensor([1e-4, 0.3, 1.0, 2.5, 7.0], dtype=torch.float64)
    b = torch.complex(rand(B, T, D, generator=g), rand(B, T, D, generator=g))
    h0 = torch.complex(rand(B, D, generator=g), rand(B, D, generator=g)) if with_state else None
    return log_decay, theta, b, h0


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_hgrn_mapping_matches_reference(with_state):
    log_decay, theta, b, h0 = _hgrn_inputs(with_state)
    h, last = backend.hgrn_fla(log_decay, theta, b, h0, kernel=hgrn_as_kernel)
    a = torch.polar(log_decay.exp(), theta.expand_as(log_decay))
    h_ref, last_ref = linear_scan_reference(a, b, h0)
    assert h.dtype == last.dtype == torch.complex128 and last.shape == last_ref.shape
    torch.testing.assert_close(h, h_ref, **TOL)
    torch.testing.assert_close(last, last_ref, **TOL)


@needs_fla
def test_hgrn_mapping_continues_across_calls():
    """The phase restarts at each call (``t`` is local): two calls passing the state on equal one."""
    log_decay, theta, b, h0 = _hgrn_inputs(True, seed=1)
    h_full, last_full = backend.hgrn_fla(log_decay, theta, b, h0, kernel=hgrn_as_kernel)
    h1, last1 = backend.hgrn_fla(log_decay[:, :7], theta, b[:, :7], h0, kernel=hgrn_as_kernel)
    h2, last2 = backend.hgrn_fla(log_decay[:, 7:], theta, b[:, 7:], last1, kernel=hgrn_as_kernel)
    torch.testing.assert_close(torch.cat([h1, h2], dim=1), h_full, **TOL)
    torch.testing.assert_close(last2, last_full, **TOL)


@needs_fla
def test_hgrn_mapping_with_a_wrong_phase_convention_fails():
    """Rotating by ``theta (t - 1)`` instead of ``theta t`` (an off-by-one in the substitution)
    is caught: the check is sensitive to the convention it claims to verify."""
    log_decay, theta, b, h0 = _hgrn_inputs(True)
    a = torch.polar(log_decay.exp(), theta.expand_as(log_decay))
    h_ref, _ = linear_scan_reference(a, b, h0)
    shifted = torch.cat([b.new_zeros(B, 1, b.shape[-1]), b], dim=1)  # t counted from 2
    h_wrong, _ = backend.hgrn_fla(
        torch.cat([log_decay[:, :1], log_decay], dim=1), theta, shifted, h0, kernel=hgrn_as_kernel
    )
    assert not _close(h_wrong[:, 1:], h_ref)


@needs_fla
def test_hgrn_mapping_keeps_the_phase_precise_at_large_t():
    """``theta t`` for ``t`` in the millions: formed in float64 and reduced modulo 2 pi, the
    rotation is exact to float32 even when ``theta`` is float32 (the layer's parameter)."""
    T_long, D = 3_000_000, 1
    theta = torch.tensor([0.7], dtype=torch.float32)
    log_decay = torch.zeros(1, T_long, D, dtype=torch.float32)  # a pure rotation: |h| stays 1
    b = torch.zeros(1, T_long, D, dtype=torch.complex64)
    h0 = torch.ones(1, D, dtype=torch.complex64)

    def sum_kernel(x, g, initial_state=None, output_final_state=False):
        # no decay and zero inputs: g_t = g_0 at every step (fla's recurrence, in one line)
        return initial_state[:, None].expand_as(x).clone(), None

    _, last = backend.hgrn_fla(log_decay, theta, b, h0, kernel=sum_kernel)
    phase = theta.double().item() * T_long  # the float32 parameter's own value, times t, exactly
    exact = complex(math.cos(phase), math.sin(phase))
    assert abs(complex(last[0, 0]) - exact) < 1e-5
    # the naive float32 product would be off by ~ T * eps32 = 0.2 rad
    naive = theta.item() * torch.tensor(T_long, dtype=torch.float32)
    assert abs(complex(math.cos(naive), math.sin(naive)) - exact) > 1e-3


# --- Kimi Delta Attention and RWKV-7 ------------------------------------------------------------


def _delta_inputs(seed: int, K: int = 4, V: int = 6):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(rand(B, T, H, K, generator=g), dim=-1)
    k = torch.nn.functional.normalize(rand(B, T, H, K, generator=g), dim=-1)
    v = rand(B, T, H, V, generator=g)
    log_decay = -torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    beta = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    S0 = rand(B, H, K, V, generator=g)
    return q, k, v, log_decay, beta, S0


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("negative_eigenvalues", [False, True])
def test_kda_mapping_matches_reference(with_state, negative_eigenvalues):
    q, k, v, g, beta, S0 = _delta_inputs(5)
    beta = 2 * beta if negative_eigenvalues else beta
    S0 = S0 if with_state else None
    o, S = backend.delta_rule_fla(q, k, v, beta, g, state=S0, kernel=kda_as_kernel)
    o_ref, S_ref = kda_reference(q, k, v, g, beta, state=S0)
    assert o.dtype == S.dtype == torch.float64
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


@needs_fla
def test_kda_mapping_with_a_value_first_state_fails():
    """A state read in the ``[V, K]`` orientation (fla's ``state_v_first``) is caught."""
    q, k, v, g, beta, S0 = _delta_inputs(6, K=4, V=4)
    o_ref, _ = kda_reference(q, k, v, g, beta, state=S0)
    o, _ = backend.delta_rule_fla(q, k, v, beta, g, state=S0.transpose(-1, -2), kernel=kda_as_kernel)
    assert not _close(o, o_ref)


def _rwkv7_inputs(seed: int, K: int = 4, V: int = 6):
    g = torch.Generator().manual_seed(seed)
    r, k = rand(B, T, H, K, generator=g), rand(B, T, H, K, generator=g) * 0.5
    v = rand(B, T, H, V, generator=g)
    floor = 0.6
    log_w = -floor * torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    kappa = torch.nn.functional.normalize(rand(B, T, H, K, generator=g), dim=-1)
    a = torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    S0 = rand(B, H, K, V, generator=g)
    return r, log_w, k, v, kappa, a, S0, -floor


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_rwkv7_mapping_matches_reference(with_state):
    r, log_w, k, v, kappa, a, S0, floor = _rwkv7_inputs(7)
    S0 = S0 if with_state else None
    o, S = backend.dplr_fla(
        r, log_w, k, v, -kappa, kappa * a, state=S0, min_log_decay=floor, kernel=rwkv7_as_kernel
    )
    o_ref, S_ref = rwkv7_reference(r, log_w, k, v, kappa, a, state=S0)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


@needs_fla
def test_rwkv7_mapping_with_the_rank_one_factors_swapped_fails():
    """``a`` and ``b`` exchanged (``S (b a^T)`` read as ``(a b^T) S``) is caught."""
    r, log_w, k, v, kappa, a, S0, _ = _rwkv7_inputs(8)
    o_ref, _ = rwkv7_reference(r, log_w, k, v, kappa, a, state=S0)
    o, _ = backend.dplr_fla(r, log_w, k, v, kappa * a, -kappa, state=S0, kernel=rwkv7_as_kernel)
    assert not _close(o, o_ref)


# --- Comba ---------------------------------------------------------------------------------------


def _comba_inputs(seed: int):
    q, k, v, log_decay, beta, S0 = _delta_inputs(seed)
    p = 0.7 * k  # the layer's p = sigmoid(c) k
    return q - 0.5 * p, k, v, p, beta, log_decay[..., 0], S0


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_comba_mapping_matches_reference(with_state):
    q, k, v, p, beta, g, S0 = _comba_inputs(9)
    S0 = S0 if with_state else None
    o, S = backend.comba_fla(q, k, v, p, beta, g, state=S0, kernel=comba_as_kernel)
    o_ref, S_ref = comba_reference(q, k, v, p, beta, g, state=S0)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


@needs_fla
def test_comba_mapping_with_gate_and_beta_in_the_reference_order_fails():
    """Passing ``(beta, g)`` in mixerlab's order to fla's ``(g, beta)`` slots is caught."""
    q, k, v, p, beta, g, S0 = _comba_inputs(10)
    o_ref, _ = comba_reference(q, k, v, p, beta, g, state=S0)
    o, _ = backend.comba_fla(q, k, v, p, g, beta, state=S0, kernel=comba_as_kernel)
    assert not _close(o, o_ref)


# --- Gated DeltaProduct ------------------------------------------------------------------------


def _deltaproduct_inputs(seed: int, n_h: int = 3, K: int = 4, V: int = 6):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(rand(B, T, H, K, generator=g), dim=-1)
    k = torch.nn.functional.normalize(rand(B, T, n_h, H, K, generator=g), dim=-1)
    v = rand(B, T, n_h, H, V, generator=g)
    beta = 2 * torch.rand(B, T, n_h, H, generator=g, dtype=torch.float64)
    log_decay = -torch.rand(B, T, H, generator=g, dtype=torch.float64)
    return q, k, v, beta, log_decay, rand(B, H, K, V, generator=g)


@needs_fla
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_deltaproduct_mapping_matches_reference(gated, with_state):
    q, k, v, beta, g, S0 = _deltaproduct_inputs(11)
    g, S0 = (g if gated else None), (S0 if with_state else None)
    o, S = backend.deltaproduct_fla(q, k, v, beta, g, state=S0, kernel=deltaproduct_as_kernel)
    o_ref, S_ref = deltaproduct_reference(q, k, v, beta, g, state=S0)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


@needs_fla
def test_deltaproduct_mapping_with_steps_in_the_wrong_order_fails():
    """The ``n_h`` steps flattened head-major (``(n t)`` instead of ``(t n)``) are caught."""
    q, k, v, beta, g, S0 = _deltaproduct_inputs(12)
    o_ref, _ = deltaproduct_reference(q, k, v, beta, g, state=S0)
    n_h = k.shape[2]

    def step_major(t):  # [B, T, n_h, ...] reordered so that the kernel reads (n t) as (t n)
        return t.transpose(1, 2).reshape(t.shape).contiguous()

    o, _ = backend.deltaproduct_fla(
        q, step_major(k), step_major(v), step_major(beta), g, state=S0, kernel=deltaproduct_as_kernel
    )
    assert n_h > 1 and not _close(o, o_ref)


# --- Gated Slot Attention ----------------------------------------------------------------------


def _gsa_inputs(seed: int, K: int = 4, V: int = 6, M: int = 5):
    g = torch.Generator().manual_seed(seed)
    q, k = rand(B, T, H, K, generator=g), rand(B, T, H, K, generator=g)
    v = rand(B, T, H, V, generator=g)
    log_alpha = torch.nn.functional.logsigmoid(rand(B, T, H, M, generator=g) + 1.0)
    return q, k, v, log_alpha, rand(B, H, M, K, generator=g), rand(B, H, M, V, generator=g)


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_gsa_mapping_matches_reference(with_state):
    q, k, v, log_alpha, Ks0, Vs0 = _gsa_inputs(13)
    slots = {"key_slots": Ks0, "value_slots": Vs0} if with_state else {}
    o, Ks, Vs = backend.gsa_fla(q, k, v, log_alpha, **slots, kernel=gsa_as_kernel)
    o_ref, Ks_ref, Vs_ref = gsa_reference(q, k, v, log_alpha, **slots)
    assert Ks.shape == Ks_ref.shape and Vs.shape == Vs_ref.shape
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(Ks, Ks_ref, **TOL)
    torch.testing.assert_close(Vs, Vs_ref, **TOL)


@needs_fla
def test_gsa_mapping_with_fla_gate_in_place_of_the_write_fails():
    """Letting fla derive ``s`` and ``g`` from one input (its ABC gate, ``g=None``) is a
    different model: caught."""
    q, k, v, log_alpha, Ks0, Vs0 = _gsa_inputs(14)
    o_ref, _, _ = gsa_reference(q, k, v, log_alpha, key_slots=Ks0, value_slots=Vs0)

    def abc_gate(q, k, v, s, g=None, **kwargs):
        return gsa_as_kernel(q, k, v, log_alpha, None, **kwargs)

    o, _, _ = backend.gsa_fla(q, k, v, log_alpha, key_slots=Ks0, value_slots=Vs0, kernel=abc_gate)
    assert not _close(o, o_ref)


# --- log-linear Mamba-2 -------------------------------------------------------------------------


def _log_linear_inputs(seed: int, T_: int = T, P: int = 4, N: int = 6, L: int = 8):
    g = torch.Generator().manual_seed(seed)
    x, B_, C_ = rand(B, T_, H, P, generator=g), rand(B, T_, N, generator=g), rand(B, T_, N, generator=g)
    dt = torch.rand(B, T_, H, generator=g, dtype=torch.float64)
    A = -torch.rand(H, generator=g, dtype=torch.float64)
    lam = torch.rand(B, T_, H, L, generator=g, dtype=torch.float64) * 2
    return x, dt, A, B_, C_, lam


@needs_fla
@pytest.mark.parametrize("T_", [1, 16, 19, 32])  # powers of two fill a new top level
def test_log_linear_mapping_matches_reference(T_):
    args = _log_linear_inputs(15, T_)
    y, states = backend.log_linear_fla(*args, kernel=log_linear_as_kernel)
    y_ref, states_ref = log_linear_reference(*args)
    assert states.shape == states_ref.shape
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(states, states_ref, **TOL)


@needs_fla
def test_log_linear_mapping_continues_on_mixerlabs_form():
    """The buckets the mapping forms are the state mixerlab's chunked form continues from."""
    args = _log_linear_inputs(16, 29)
    y_ref, states_ref = log_linear_reference(*args)
    # A: [H] is per head, every other input per token
    head, tail = ([t if t.dim() == 1 else t[:, part] for t in args] for part in (slice(13), slice(13, None)))
    y1, states1 = backend.log_linear_fla(*head, kernel=log_linear_as_kernel)
    y2, states2 = log_linear_chunk(*tail, states=states1, position=13, chunk_size=8)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y_ref, **TOL)
    torch.testing.assert_close(states2, states_ref, **TOL)


@needs_fla
def test_log_linear_mapping_with_levels_off_by_one_fails():
    """Level scales shifted by one level (fla's level 0 read as mixerlab's level 1) are caught."""
    args = _log_linear_inputs(17)
    y_ref, _ = log_linear_reference(*args)

    def shifted(q, k, v, g, level_scales, **kwargs):
        return log_linear_as_kernel(q, k, v, g, level_scales.roll(1, dims=-1), **kwargs)

    y, _ = backend.log_linear_fla(*args, kernel=shifted)
    assert not _close(y, y_ref)


def test_log_linear_refuses_fla_for_sizes_its_kernel_cannot_take():
    with pytest.raises(ConfigError, match="state_dim"):
        mixerlab.create_token_mixer("log_linear", dim=16, head_dim=8, state_dim=16, backend="fla")


# --- whole layers -------------------------------------------------------------------------------

LAYERS = {
    "hgrn": ({"dim": 8, "lower_bound": 0.25, "chunk_size": 8}, "hgrn"),
    "hgrn_no_bound": ({"dim": 8, "chunk_size": 8}, "hgrn"),
    "kda": ({"dim": 16, "num_heads": 2, "chunk_size": 8}, "kda"),
    "gated_deltaproduct": (
        {"dim": 16, "num_heads": 2, "chunk_size": 7, "num_householder": 2},
        "deltaproduct",
    ),
    "gsa": ({"dim": 16, "num_heads": 2, "num_slots": 6, "chunk_size": 8}, "gsa"),
    "log_linear": (
        {"dim": 8, "expand": 2, "head_dim": 8, "state_dim": 64, "num_levels": 8, "chunk_size": 4},
        "log_linear",
    ),
    "comba": ({"dim": 16, "num_heads": 2, "chunk_size": 8}, "comba"),
    "rwkv7": ({"dim": 16, "num_heads": 2, "chunk_size": 8, "low_rank_dim": 4}, "rwkv7"),
}


@needs_fla
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer_on_the_fla_path_equals_the_torch_path(case, monkeypatch):
    """The whole mixer with its fast mode routed to fla (references standing in for the kernels)
    equals the same mixer on mixerlab's path: outputs, continued from a state, the state, and the
    input and parameter gradients through both calls."""
    kwargs, module = LAYERS[case]
    name = case.removesuffix("_no_bound")
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **kwargs).double()
    x = torch.randn(2, 13, mixer.dim, dtype=torch.float64, requires_grad=True)
    params = [x, *mixer.parameters()]

    def run():
        y1, state = mixer(x[:, :6])
        y2, state2 = mixer(x[:, 6:], state=state)
        grads = torch.autograd.grad(y2.square().sum() + y1.sum(), params)
        return y1, y2, state2, grads

    y_torch, y2_torch, state_torch, grads_torch = run()
    calls = []
    monkeypatch.setattr(backend, "_kernel", lambda kernel: calls.append(kernel) or KERNELS[kernel])
    monkeypatch.setattr(f"mixerlab.layers.token_mixers.{module}.use_fla", lambda owner, choice, x, **kw: True)
    y_fla, y2_fla, state_fla, grads_fla = run()
    assert calls, "the fla path was not taken"
    if name == "hgrn":  # chunk_hgrn gives no gradient to a state: the continued call needs one
        assert calls == ["chunk_hgrn", "fused_recurrent_hgrn"]
    torch.testing.assert_close(y_fla, y_torch, **TOL)
    torch.testing.assert_close(y2_fla, y2_torch, **TOL)
    for key in state_torch:
        torch.testing.assert_close(state_fla[key], state_torch[key], **TOL)
    for grad_fla, grad_torch in zip(grads_fla, grads_torch):
        torch.testing.assert_close(grad_fla, grad_torch, **TOL)


@needs_fla
def test_a_kernel_that_refuses_float32_names_the_dtypes_it_takes():
    """``chunk_gated_delta_product`` asserts 16-bit inputs: ``"fla"`` says so, ``"auto"`` falls back."""
    x = torch.randn(1, 4, 8)
    with pytest.raises(ConfigError, match=r"backend='fla'.*\['torch.bfloat16', 'torch.float16'\]"):
        backend.use_fla("gated_deltaproduct", "fla", x, dtypes=backend.FLA_HALF_DTYPES)
    assert not backend.use_fla("gated_deltaproduct", "auto", x, dtypes=backend.FLA_HALF_DTYPES)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_backend_option_is_checked(case):
    kwargs, _ = LAYERS[case]
    with pytest.raises(ConfigError, match="backend"):
        mixerlab.create_token_mixer(case.removesuffix("_no_bound"), **kwargs, backend="triton")


# On the GPU: sizes fla's kernels tile (tl.dot needs 16 or more along each side), and the dtype
# each kernel takes with the relative error its rounding allows (float32 may round through TF32).
CUDA_CASES = {case: ({**kwargs, "dim": 64}, torch.float32, 1e-2) for case, (kwargs, _) in LAYERS.items()}
CUDA_CASES["gsa"] = ({**LAYERS["gsa"][0], "dim": 64, "num_slots": 16}, torch.float32, 1e-2)
CUDA_CASES["log_linear"] = (
    {**LAYERS["log_linear"][0], "dim": 32, "head_dim": 16, "num_levels": 10},
    torch.float32,
    1e-2,
)
# chunk_gated_delta_product refuses float32: checked in bfloat16 (8 mantissa bits)
CUDA_CASES["gated_deltaproduct"] = ({**LAYERS["gated_deltaproduct"][0], "dim": 64}, torch.bfloat16, 6e-2)


@needs_fla
@pytest.mark.parametrize("case", sorted(CUDA_CASES))
def test_fla_recurrent_kernels_match_the_reference_on_cuda(case, kernels_match_reference_on_cuda):
    """The kernels themselves: each mixer on fla's kernels on CUDA, over several of fla's 64-step
    chunks and continued from a state, against its per-step reference in float64 on the CPU
    (outputs, final state, input and parameter gradients; relative norm errors)."""
    options, dtype, bound = CUDA_CASES[case]
    kernels_match_reference_on_cuda(
        case.removesuffix("_no_bound"),
        options,
        backend="fla",
        spies=[(backend, "_kernel")],
        dtype=dtype,
        bound=bound,
    )
