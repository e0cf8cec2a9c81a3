"""The flash-linear-attention backend (mixerlab/ops/backends/fla.py): the mapping of conventions.

fla's Triton kernels need a GPU, but fla ships a pure-PyTorch reference for each op, with its own
conventions (layouts, scale, gate order). Here each mapping function runs with an adapter that
calls that reference in place of the kernel it names, and must equal mixerlab's per-step reference
(outputs and final states, with and without an initial state). The adapters only translate the
kernel's call signature to the reference's; every convention choice is the mapping's. fla's
references compute in float32 whatever the input, so the tolerance is float32's: a wrong scale,
gate sign, layout or state orientation is off by orders of magnitude more.

The layer tests route whole mixers through the mapping (the kernels again replaced by the
references) and compare with the same mixers on mixerlab's path. The GPU check
(scripts/gpu_check.py) compares the kernels themselves with the reference on a GPU.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.backends import _loader
from mixerlab.ops.backends import fla as backend
from mixerlab.ops.delta_rule import delta_rule_reference
from mixerlab.ops.linear_attention import linear_attention_reference
from mixerlab.ops.rwkv6 import rwkv6_reference
from mixerlab.ops.selective_scan import selective_scan_reference
from mixerlab.ops.ssd import ssd_reference


def _naive(op: str, filename: str = "naive") -> ModuleType:
    """``fla/ops/<op>/naive.py`` loaded by path: ``import fla.ops`` would import every Triton
    kernel, and these references need only torch (so the tests run with ``fla-core`` alone)."""
    spec = importlib.util.find_spec("fla")  # finds the package without running its __init__
    path = Path(spec.submodule_search_locations[0]) / "ops" / op / f"{filename}.py"
    module_spec = importlib.util.spec_from_file_location(f"_fla_{op}_{filename}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


NAIVE = None  # the package is an optional extra (mixerlab[fla])
if importlib.util.find_spec("fla") is not None:
    NAIVE = {op: _naive(op) for op in ("simple_gla", "gla", "delta_rule", "gated_delta_rule")}
    NAIVE["rwkv6"] = _naive("rwkv6", "recurrent_naive")

needs_fla = pytest.mark.skipif(NAIVE is None, reason="flash-linear-attention is not installed")
TOL = {"rtol": 2e-4, "atol": 2e-5}  # float32 rounding of fla's references
B, T, H = 2, 19, 3


def simple_gla_as_kernel(q, k, v, g=None, scale=None, initial_state=None, output_final_state=False):
    """``chunk_simple_gla``'s signature on ``naive_recurrent_simple_gla`` (which needs a gate)."""
    if g is None:
        g = q.new_zeros(q.shape[:3])
    return NAIVE["simple_gla"].naive_recurrent_simple_gla(
        q, k, v, g, scale=scale, initial_state=initial_state, output_final_state=output_final_state
    )


def gla_as_kernel(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """``chunk_gla``'s signature on ``naive_recurrent_gla``, whose scale is fixed at ``K^-1/2``."""
    K = q.shape[-1]
    scale = K**-0.5 if scale is None else scale
    return NAIVE["gla"].naive_recurrent_gla(
        q * (scale * K**0.5), k, v, g, initial_state=initial_state, output_final_state=output_final_state
    )


def delta_rule_as_kernel(q, k, v, beta, scale=None, initial_state=None, output_final_state=False):
    """``chunk_delta_rule``'s signature on ``delta_rule_recurrence`` (head-first, scale ``K^-1/2``)."""
    K = q.shape[-1]
    scale = K**-0.5 if scale is None else scale
    q, k, v, beta = (t.transpose(1, 2) for t in (q * (scale * K**0.5), k, v, beta))
    o, S = NAIVE["delta_rule"].delta_rule_recurrence(q, k, v, beta, initial_state, output_final_state)
    return o.transpose(1, 2), S


def gated_delta_rule_as_kernel(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """``chunk_gated_delta_rule``'s signature on ``naive_recurrent_gated_delta_rule``."""
    return NAIVE["gated_delta_rule"].naive_recurrent_gated_delta_rule(
        q, k, v, beta, g, scale=scale, initial_state=initial_state, output_final_state=output_final_state
    )


def rwkv6_as_kernel(r, k, v, w, u, scale=None, initial_state=None, output_final_state=False):
    """``chunk_rwkv6``'s signature on ``naive_recurrent_rwkv6`` (head-first)."""
    r, k, v, w = (t.transpose(1, 2) for t in (r, k, v, w))
    o, S = NAIVE["rwkv6"].naive_recurrent_rwkv6(r, k, v, w, u, scale, initial_state, output_final_state)
    return o.transpose(1, 2), S


KERNELS = {
    "chunk_rwkv6": rwkv6_as_kernel,
    "chunk_simple_gla": simple_gla_as_kernel,
    "chunk_gla": gla_as_kernel,
    "chunk_delta_rule": delta_rule_as_kernel,
    "chunk_gated_delta_rule": gated_delta_rule_as_kernel,
}


def rand(*shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


@needs_fla
@pytest.mark.parametrize("decay", [None, "head", "channel"])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(("K", "V"), [(4, 6), (5, 3)])  # odd sizes go through the even padding
def test_linear_attention_mapping_matches_reference(decay, with_state, K, V):
    g = torch.Generator().manual_seed(0)
    q, k = rand(B, T, H, K, generator=g) * 0.5, rand(B, T, H, K, generator=g) * 0.5
    v = rand(B, T, H, V, generator=g)
    log_decay = {
        None: None,
        "head": -torch.rand(B, T, H, generator=g, dtype=torch.float64),
        "channel": -torch.rand(B, T, H, K, generator=g, dtype=torch.float64),
    }[decay]
    S0 = rand(B, H, K, V, generator=g) if with_state else None
    kernel = KERNELS["chunk_gla" if decay == "channel" else "chunk_simple_gla"]
    o, S = backend.linear_attention_fla(q, k, v, log_decay, S0, kernel=kernel)
    o_ref, S_ref = linear_attention_reference(q, k, v, log_decay, initial_state=S0)
    assert o.dtype == S.dtype == torch.float64 and S.shape == S_ref.shape
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


@needs_fla
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_delta_rule_mapping_matches_reference(gated, with_state):
    g = torch.Generator().manual_seed(1)
    K, V = 4, 8
    q = torch.nn.functional.normalize(rand(B, T, H, K, generator=g), dim=-1)
    k = torch.nn.functional.normalize(rand(B, T, H, K, generator=g), dim=-1)
    v = rand(B, T, H, V, generator=g)
    beta = 2 * torch.rand(B, T, H, generator=g, dtype=torch.float64)  # [0, 2]: negative eigenvalues too
    log_decay = -torch.rand(B, T, H, generator=g, dtype=torch.float64) if gated else None
    S0 = rand(B, H, K, V, generator=g) if with_state else None
    kernel = KERNELS["chunk_gated_delta_rule" if gated else "chunk_delta_rule"]
    o, S = backend.delta_rule_fla(q, k, v, beta, log_decay, state=S0, kernel=kernel)
    o_ref, S_ref = delta_rule_reference(q, k, v, beta, log_decay, state=S0)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_selective_scan_mapping_matches_reference(with_state):
    g = torch.Generator().manual_seed(2)
    E, N = 5, 4
    x, B_, C = rand(B, T, E, generator=g), rand(B, T, N, generator=g), rand(B, T, N, generator=g)
    dt = torch.rand(B, T, E, generator=g, dtype=torch.float64)
    A = -torch.rand(E, N, generator=g, dtype=torch.float64) * 2
    h0 = rand(B, E, N, generator=g) if with_state else None
    y, h = backend.selective_scan_fla(x, dt, A, B_, C, state=h0, kernel=gla_as_kernel)
    y_ref, h_ref = selective_scan_reference(x, dt, A, B_, C, state=h0)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_ssd_mapping_matches_reference(with_state):
    g = torch.Generator().manual_seed(3)
    P, N = 4, 6
    x, B_, C = rand(B, T, H, P, generator=g), rand(B, T, N, generator=g), rand(B, T, N, generator=g)
    dt = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 2
    h0 = rand(B, H, P, N, generator=g) if with_state else None
    y, h = backend.ssd_fla(x, dt, A, B_, C, state=h0, kernel=simple_gla_as_kernel)
    y_ref, h_ref = ssd_reference(x, dt, A, B_, C, state=h0)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_rwkv6_mapping_matches_reference(with_state):
    g = torch.Generator().manual_seed(4)
    K, V = 4, 6
    r, k, v = rand(B, T, H, K, generator=g), rand(B, T, H, K, generator=g), rand(B, T, H, V, generator=g)
    log_w = -torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    u = rand(H, K, generator=g)
    S0 = rand(B, H, K, V, generator=g) if with_state else None
    o, S = backend.rwkv6_fla(r, k, v, log_w, u, initial_state=S0, kernel=rwkv6_as_kernel)
    o_ref, S_ref = rwkv6_reference(r, k, v, log_w, u, initial_state=S0)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)


LAYERS = {
    "linear_attention": {"dim": 12, "num_heads": 2, "chunk_size": 8},
    "linear_attention_unnormalised": {
        "dim": 12,
        "num_heads": 2,
        "normalize": False,
        "feature_map": "identity",
    },
    "retention": {"dim": 12, "num_heads": 2, "chunk_size": 8},
    "gla": {"dim": 16, "num_heads": 2, "chunk_size": 8},
    "hgrn2": {"dim": 12, "num_heads": 2, "state_dim": 4, "chunk_size": 8},
    "based": {"dim": 12, "num_heads": 2, "feature_dim": 3, "window": 4, "chunk_size": 8},
    "deltanet": {"dim": 16, "num_heads": 2, "chunk_size": 8},
    "gated_deltanet": {"dim": 16, "num_heads": 2, "chunk_size": 8},
    "mamba": {"dim": 8, "state_dim": 4, "chunk_size": 8},
    "mamba2": {"dim": 8, "head_dim": 4, "state_dim": 6, "chunk_size": 8},
    "rwkv6": {"dim": 16, "num_heads": 2, "shift_rank": 4, "decay_rank": 4, "chunk_size": 8},
}


@needs_fla
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer_on_the_fla_path_equals_the_torch_path(case, monkeypatch):
    """The whole mixer with its fast mode routed to fla (references standing in for the kernels)
    equals the same mixer on mixerlab's path: outputs, continued from a state, the state, and the
    input gradient through both calls."""
    name = case.removesuffix("_unnormalised")
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **LAYERS[case]).double()
    x = torch.randn(2, 13, mixer.dim, dtype=torch.float64, requires_grad=True)
    y_torch, state_torch = mixer(x[:, :6])
    y2_torch, state2_torch = mixer(x[:, 6:], state=state_torch)
    (dx_torch,) = torch.autograd.grad(y2_torch.square().sum() + y_torch.sum(), x)

    calls = []

    def kernel(name):
        calls.append(name)
        return KERNELS[name]

    monkeypatch.setattr(backend, "_kernel", kernel)
    monkeypatch.setattr(backend, "use_fla", lambda owner, choice, x, **options: True)
    for module in ("linear_attention", "delta", "ssm", "mamba2", "rwkv6"):
        monkeypatch.setattr(f"mixerlab.layers.token_mixers.{module}.use_fla", backend.use_fla)
    y_fla, state_fla = mixer(x[:, :6])
    y2_fla, state2_fla = mixer(x[:, 6:], state=state_fla)
    assert calls, "the fla path was not taken"
    (dx_fla,) = torch.autograd.grad(y2_fla.square().sum() + y_fla.sum(), x)
    torch.testing.assert_close(dx_fla, dx_torch, **TOL)
    torch.testing.assert_close(y_fla, y_torch, **TOL)
    torch.testing.assert_close(y2_fla, y2_torch, **TOL)
    for key in state2_torch:
        torch.testing.assert_close(state2_fla[key], state2_torch[key], **TOL)


@pytest.mark.parametrize(
    "name", ["gla", "retention", "linear_attention", "based", "hgrn2", "deltanet", "mamba", "mamba2", "rwkv6"]
)
def test_backend_option_is_checked(name):
    heads = {} if name.startswith("mamba") else {"num_heads": 2}
    with pytest.raises(ConfigError, match="backend"):
        mixerlab.create_token_mixer(name, dim=16, **heads, backend="triton")


@needs_fla
def test_mamba_with_negative_eigenvalues_refuses_fla():
    with pytest.raises(ConfigError, match="negative eigenvalues"):
        mixerlab.create_token_mixer("mamba", dim=16, allow_negative_eigenvalues=True, backend="fla")


def test_auto_and_torch_take_mixerlabs_path_on_cpu_and_in_float64():
    x = torch.randn(1, 4, 8)
    assert not backend.use_fla("gla", "auto", x)
    assert not backend.use_fla("gla", "torch", x)
    assert not backend.use_fla("gla", "auto", x.double())
    assert not backend.gated_backward_broken(x.requires_grad_())


@needs_fla
def test_fla_demanded_for_a_cpu_input_is_a_clear_error():
    mixer = mixerlab.create_token_mixer("gla", dim=16, num_heads=2, backend="fla")
    with pytest.raises(ConfigError, match=r"backend='fla'.*CUDA"):
        mixer(torch.randn(1, 5, 16))


@pytest.mark.skipif(NAIVE is not None, reason="flash-linear-attention is installed")
def test_fla_demanded_without_the_package_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"backend='fla'.*not installed"):
        mixerlab.create_token_mixer("gla", dim=16, num_heads=2, backend="fla")


def test_gated_backward_fallback_warns(monkeypatch):
    """Where fla refuses the gated backward, the layer's own form runs, after a warning: for a
    scalar gate ``[B, T, H]`` (the last of the call's inputs) only, and through ``use_fla``."""
    monkeypatch.setattr(backend, "gated_backward_broken", lambda *tensors: True)
    _loader.warn_once.cache_clear()
    q = torch.randn(1, 3, 2, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.gated_backward_refused("gated_deltanet", q, q, q, q[..., 0], q[..., 0])
        assert not backend.gated_backward_refused("deltanet", q, q, q, q[..., 0], None)
        assert backend.gated_backward_refused("retention", q, q, q, q[..., 0])
        assert not backend.gated_backward_refused("gla", q, q, q, q)
        assert not backend.gated_backward_refused("linear_attention")
    assert any("Triton" in str(w.message) for w in caught)
    # an input fla's kernels take (the attributes of a CUDA tensor, so that this runs on a CPU)
    monkeypatch.setattr(backend, "_load", lambda: (object(), None))
    cuda_input = SimpleNamespace(is_cuda=True, dtype=torch.bfloat16, device=torch.device("cuda"))
    assert backend.use_fla("gla", "fla", cuda_input, gated=(q, q, q, q))
    assert backend.use_fla("deltanet", "fla", cuda_input, gated=(q, q, q, q[..., 0], None))
    assert not backend.use_fla("retention", "fla", cuda_input, gated=(q, q, q, q[..., 0]))


@needs_fla
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_fla_kernels_match_the_reference_on_cuda(case, kernels_match_reference_on_cuda):
    """The kernels themselves: each mixer on fla's kernels in float32 on CUDA, over several of
    fla's 64-step chunks and continued from a state, against its per-step reference in float64
    on the CPU (outputs, final state, input and parameter gradients). Triton's float32 matmuls
    may round through TF32, hence the 1% bound on relative (norm) errors. fla's ungated
    ``chunk_delta_rule`` refuses float32, so ``deltanet`` is checked in bfloat16 (8 mantissa bits)."""
    options = {**LAYERS[case], "dim": 64}
    dtype, bound = (torch.bfloat16, 6e-2) if case == "deltanet" else (torch.float32, 1e-2)
    kernels_match_reference_on_cuda(
        case.removesuffix("_unnormalised"),
        options,
        backend="fla",
        spies=[(backend, "_kernel")],
        dtype=dtype,
        bound=bound,
    )


def test_deltanet_sends_fla_only_16_bit_inputs(monkeypatch):
    """fla's ungated ``chunk_delta_rule`` refuses float32 (its gated kernel and ``chunk_kda`` take
    it): the layer asks ``use_fla`` with the dtypes each kernel takes, so that ``"auto"`` keeps a
    float32 ``deltanet`` on mixerlab's path instead of crashing inside fla."""
    from mixerlab.layers.token_mixers import delta

    asked = {}

    def spy(owner, choice, x, *, dtypes=backend.FLA_DTYPES, gated=()):
        asked[owner] = dtypes
        return False

    monkeypatch.setattr(delta, "use_fla", spy)
    for name in ("deltanet", "gated_deltanet"):
        mixer = mixerlab.create_token_mixer(name, dim=16, num_heads=2, chunk_size=4)
        mixer(torch.randn(1, 8, 16))
    assert asked["deltanet"] == backend.FLA_HALF_DTYPES
    assert torch.float32 in asked["gated_deltanet"]
