"""The mamba-ssm / causal-conv1d backend (mixerlab/ops/backends/mamba_ssm.py): the mapping of conventions.

mamba-ssm's and causal-conv1d's kernels need a GPU (and their CUDA extensions), but each package
ships pure-PyTorch references in the same files: ``selective_scan_ref`` (the signature of
``selective_scan_fn``), ``causal_conv1d_ref`` (of ``causal_conv1d_fn``) and ``ssd_minimal_discrete``
(Listing 1 of arXiv:2405.21060, with initial and final states). Here each mapping function runs
with the reference in place of the kernel and must equal mixerlab's per-step reference: outputs
and final states. The adapter for the SSD kernel only translates ``mamba_chunk_scan_combined``'s
documented arguments (``dt`` scales ``x`` and ``A`` inside the kernel) to Listing 1's; every
convention choice is the mapping's. ``selective_scan_ref`` computes in float32 whatever the input,
so its tolerance is float32's; the other two references keep float64. Each comparison is also run
with one convention broken, and must then fail.

The references' files are loaded by path, with stand-ins for the compiled extensions and for the
imports they do not use placed in ``sys.modules`` only while loading (``import mamba_ssm`` would
import the CUDA extension, Triton and every module of the package). The GPU test at the end
compares the kernels themselves with mixerlab's reference.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.backends import _loader, fla
from mixerlab.ops.backends import mamba_ssm as backend
from mixerlab.ops.conv1d import causal_conv1d_reference
from mixerlab.ops.selective_scan import selective_scan_reference
from mixerlab.ops.ssd import ssd_reference


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds the package without running its __init__
    return None if spec is None else Path(spec.submodule_search_locations[0])


@contextmanager
def _standins(modules: dict[str, dict]):
    """Put stand-in modules (name -> attributes; a package stand-in gets its real directory as
    ``__path__`` so its real submodules import) into ``sys.modules``; afterwards remove them and
    every module imported under their top-level names, and put back what they replaced. (Other
    modules imported meanwhile, e.g. ``triton``, are real and stay, as after any import.)"""
    saved = dict(sys.modules)
    roots = {name.split(".")[0] for name in modules}
    for name, attributes in modules.items():
        module = ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] in roots:
                del sys.modules[name]
        sys.modules.update({name: module for name, module in saved.items() if name.split(".")[0] in roots})


def _load_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# what the references' files import from causal-conv1d's compiled extension (never called)
CONV_EXTENSION = ("causal_conv1d_fwd_function", "causal_conv1d_bwd_function", "causal_conv1d_update_function")


def _load_references() -> dict[str, object] | None:
    mamba_dir, conv_dir = _package_dir("mamba_ssm"), _package_dir("causal_conv1d")
    if mamba_dir is None or conv_dir is None:
        return None
    standins = {
        # the packages without their __init__ (which imports the kernels)
        "mamba_ssm": {"__path__": [str(mamba_dir)]},
        "causal_conv1d": {"__path__": [str(conv_dir)]},
        # the compiled extensions and the Triton modules these files import but the refs never call
        "selective_scan_cuda": {},
        "causal_conv1d.cpp_functions": dict.fromkeys(CONV_EXTENSION),
        "mamba_ssm.ops.triton.layer_norm": {"_layer_norm_fwd": None},
        "mamba_ssm.ops.triton.ssd_combined": {"mamba_chunk_scan_combined": None},
    }
    with _standins(standins):
        scan = _load_file(mamba_dir / "ops" / "selective_scan_interface.py", "_mamba_ssm_selective_scan")
        ssd = _load_file(mamba_dir / "modules" / "ssd_minimal.py", "_mamba_ssm_ssd_minimal")
        conv = _load_file(conv_dir / "causal_conv1d_interface.py", "_causal_conv1d_interface")
    return {
        "selective_scan_ref": scan.selective_scan_ref,
        "ssd_minimal_discrete": ssd.ssd_minimal_discrete,
        "causal_conv1d_ref": conv.causal_conv1d_ref,
    }


def _load_ssd_combined_reference():
    """``ssd_chunk_scan_combined_ref``: the package's chunked SSD reference with the kernel's own
    signature (no states); it lives among the Triton kernels, so it needs Triton to import."""
    if REFS is None or importlib.util.find_spec("triton") is None:
        return None
    mamba_dir, conv_dir = _package_dir("mamba_ssm"), _package_dir("causal_conv1d")
    standins = {
        "mamba_ssm": {"__path__": [str(mamba_dir)]},
        "causal_conv1d": {"__path__": [str(conv_dir)]},
        "causal_conv1d.cpp_functions": dict.fromkeys(CONV_EXTENSION),
    }
    with _standins(standins):
        path = mamba_dir / "ops" / "triton" / "ssd_combined.py"
        return _load_file(path, "_mamba_ssm_ssd_combined").ssd_chunk_scan_combined_ref


REFS = _load_references()
SSD_COMBINED_REF = _load_ssd_combined_reference()
needs_refs = pytest.mark.skipif(REFS is None, reason="needs both mamba-ssm and causal-conv1d installed")
TOL32 = {"rtol": 2e-4, "atol": 2e-5}  # selective_scan_ref computes in float32
TOL64 = {"rtol": 1e-9, "atol": 1e-10}
B, T = 2, 19


def rand(*shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def ssd_as_kernel(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, **options):
    """``mamba_chunk_scan_combined``'s documented arguments on Listing 1 (``ssd_minimal_discrete``):
    the kernel discretises inside (``X = dt x``, ``dA = dt A``), shares a group's ``B, C`` among
    its heads and takes any length; Listing 1 takes the discretised inputs, ``B, C`` per head and
    whole chunks (steps with ``dt = 0`` appended at the end change neither outputs nor state)."""
    assert D is None and z is None and dt_bias is None and not options.get("dt_softplus")
    length, heads = x.shape[1], x.shape[2]
    pad = -length % chunk_size
    x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
    dt = F.pad(dt, (0, 0, 0, pad))
    groups = B.shape[2]
    B, C = (t.repeat_interleave(heads // groups, dim=2) for t in (B, C))
    h0 = None if initial_states is None else initial_states[:, None]  # [B, 1 chunk, H, P, N]
    y, h = REFS["ssd_minimal_discrete"](x * dt[..., None], dt * A, B, C, chunk_size, initial_states=h0)
    return (y[:, :length], h) if options.get("return_final_states") else y[:, :length]


def kernels() -> dict[str, object]:
    return {
        "selective_scan_fn": REFS["selective_scan_ref"],
        "mamba_chunk_scan_combined": ssd_as_kernel,
        "causal_conv1d_fn": REFS["causal_conv1d_ref"],
    }


def _broken(kernel, convention: str):
    """``kernel`` called with one convention of the mapping broken (for the checks that fail)."""

    def call(*args, **kwargs):
        args = list(args)
        if convention == "B and C swapped":
            args[3], args[4] = args[4], args[3]
        elif convention == "taps reversed":
            args[1] = args[1].flip(-1)
        elif convention == "initial state dropped":
            kwargs["initial_states"] = None
        elif convention == "time reversed":
            args[0] = args[0].flip(-1)
        return kernel(*args, **kwargs)

    return call


def selective_scan_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    E, N = 5, 4
    x, z = rand(B, T, E, generator=g), rand(B, T, E, generator=g)
    dt = torch.rand(B, T, E, generator=g, dtype=torch.float64)
    A = -torch.rand(E, N, generator=g, dtype=torch.float64) * 2
    B_, C = rand(B, T, N, generator=g), rand(B, T, N, generator=g)
    return x, dt, A, B_, C, rand(E, generator=g), z


@needs_refs
@pytest.mark.parametrize("fused", [False, True])
def test_selective_scan_mapping_matches_reference(fused):
    x, dt, A, B_, C, D, z = selective_scan_case(0)
    extra = {"D": D, "z": z} if fused else {}
    y, h = backend.selective_scan_mamba_ssm(x, dt, A, B_, C, **extra, kernel=REFS["selective_scan_ref"])
    y_ref, h_ref = selective_scan_reference(x, dt, A, B_, C)
    if fused:
        y_ref = (y_ref + D * x) * F.silu(z)
    assert y.dtype == h.dtype == torch.float64 and y.shape == x.shape and h.shape == h_ref.shape
    torch.testing.assert_close(y, y_ref, **TOL32)
    torch.testing.assert_close(h, h_ref, **TOL32)


@needs_refs
@pytest.mark.parametrize("convention", ["B and C swapped", "time reversed"])
def test_selective_scan_mapping_with_a_wrong_convention_fails(convention):
    x, dt, A, B_, C, _, _ = selective_scan_case(1)
    kernel = _broken(REFS["selective_scan_ref"], convention)
    y, _ = backend.selective_scan_mamba_ssm(x, dt, A, B_, C, kernel=kernel)
    y_ref, _ = selective_scan_reference(x, dt, A, B_, C)
    assert not torch.allclose(y, y_ref, **TOL32)


def ssd_case(seed: int, with_state: bool):
    g = torch.Generator().manual_seed(seed)
    H, P, N = 3, 4, 6
    x, B_, C = rand(B, T, H, P, generator=g), rand(B, T, N, generator=g), rand(B, T, N, generator=g)
    dt = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 2
    return x, dt, A, B_, C, rand(B, H, P, N, generator=g) if with_state else None


@needs_refs
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk_size", [8, 256])  # several chunks with a ragged end; one chunk
def test_ssd_mapping_matches_reference(with_state, chunk_size):
    x, dt, A, B_, C, h0 = ssd_case(2, with_state)
    y, h = backend.ssd_mamba_ssm(x, dt, A, B_, C, state=h0, chunk_size=chunk_size, kernel=ssd_as_kernel)
    y_ref, h_ref = ssd_reference(x, dt, A, B_, C, state=h0)
    assert y.dtype == h.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, **TOL64)
    torch.testing.assert_close(h, h_ref, **TOL64)


@needs_refs
@pytest.mark.skipif(
    SSD_COMBINED_REF is None, reason="needs Triton: mamba-ssm's chunked SSD reference imports it"
)
def test_ssd_adapter_reads_the_kernel_as_the_packages_own_reference_does():
    """The adapter's reading of ``mamba_chunk_scan_combined`` (it discretises with ``dt`` inside,
    a group's ``B, C`` serve its heads) equals ``ssd_chunk_scan_combined_ref``, which takes the
    kernel's very arguments: outputs from a zero state, two groups of two heads, whole chunks
    (what that reference needs). It computes ``dt`` in float32, hence float32's tolerance."""
    g = torch.Generator().manual_seed(6)
    length, H, P, N, groups, chunk = 24, 4, 4, 6, 2, 8
    x, dt = rand(B, length, H, P, generator=g), torch.rand(B, length, H, generator=g, dtype=torch.float64)
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 2
    B_, C = rand(B, length, groups, N, generator=g), rand(B, length, groups, N, generator=g)
    y = ssd_as_kernel(x, dt, A, B_, C, chunk)
    torch.testing.assert_close(y, SSD_COMBINED_REF(x, dt, A, B_, C, chunk), **TOL32)
    assert not torch.allclose(ssd_as_kernel(x, dt, A, C, B_, chunk), y, **TOL32)


@needs_refs
@pytest.mark.parametrize("convention", ["B and C swapped", "initial state dropped"])
def test_ssd_mapping_with_a_wrong_convention_fails(convention):
    x, dt, A, B_, C, h0 = ssd_case(3, with_state=True)
    kernel = _broken(ssd_as_kernel, convention)
    y, _ = backend.ssd_mamba_ssm(x, dt, A, B_, C, state=h0, chunk_size=8, kernel=kernel)
    y_ref, _ = ssd_reference(x, dt, A, B_, C, state=h0)
    assert not torch.allclose(y, y_ref, **TOL32)


def conv_case(seed: int, length: int, with_state: bool):
    g = torch.Generator().manual_seed(seed)
    channels, width = 16, 4
    x, weight, bias = rand(B, length, channels, generator=g), rand(channels, width, generator=g), None
    bias = rand(channels, generator=g)
    state = rand(B, width - 1, channels, generator=g) if with_state else None
    return x, weight, bias, state


@needs_refs
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("length", [T, 2])  # 2 < W - 1: the tail mixes state and input
def test_causal_conv1d_mapping_matches_reference(with_state, activation, length):
    x, weight, bias, state = conv_case(4, length, with_state)
    y, tail = backend.causal_conv1d_mamba_ssm(
        x, weight, bias, state, activation=activation, kernel=REFS["causal_conv1d_ref"]
    )
    y_ref, tail_ref = causal_conv1d_reference(x, weight, bias, state)
    if activation == "silu":
        y_ref = F.silu(y_ref)
    assert y.shape == x.shape and tail.shape == tail_ref.shape
    torch.testing.assert_close(y, y_ref, **TOL64)
    torch.testing.assert_close(tail, tail_ref, **TOL64)


@needs_refs
@pytest.mark.parametrize("convention", ["taps reversed", "initial state dropped"])
def test_causal_conv1d_mapping_with_a_wrong_convention_fails(convention):
    x, weight, bias, state = conv_case(5, T, with_state=True)
    kernel = _broken(REFS["causal_conv1d_ref"], convention)
    y, _ = backend.causal_conv1d_mamba_ssm(x, weight, bias, state, kernel=kernel)
    y_ref, _ = causal_conv1d_reference(x, weight, bias, state)
    assert not torch.allclose(y, y_ref, **TOL32)


def _route_to_references(monkeypatch) -> list[str]:
    """The layers' fast modes on the mapping, the references standing in for the kernels (and the
    CUDA-only conditions lifted); returns the list of kernels called."""
    calls: list[str] = []
    refs = kernels()
    monkeypatch.setattr(backend, "_kernel", lambda name: calls.append(name) or refs[name])
    monkeypatch.setattr(backend, "_conv_kernel_runs_on", lambda x: True)
    for module in ("ssm", "mamba2"):
        monkeypatch.setattr(f"mixerlab.layers.token_mixers.{module}.use_mamba_ssm", lambda *args: True)
    return calls


@needs_refs
def test_mamba2_on_the_kernels_equals_the_torch_path(monkeypatch):
    """``mamba2`` routed to the kernels' mapping equals ``mamba2`` on mixerlab's path: outputs
    over two calls that pass the state on, the states, and the input gradient through both."""
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("mamba2", dim=8, head_dim=4, state_dim=4, chunk_size=8).double()
    x = torch.randn(2, 13, 8, dtype=torch.float64, requires_grad=True)

    def run():
        y1, s1 = mixer(x[:, :6])
        y2, s2 = mixer(x[:, 6:], state=s1)
        (dx,) = torch.autograd.grad(y2.square().sum() + y1.sum(), x)
        return y1, y2, s2, dx

    expected = run()
    calls = _route_to_references(monkeypatch)
    got = run()
    # conv channels E + 2N = 24: the conv kernel fits; both calls take both kernels
    assert calls == ["causal_conv1d_fn", "mamba_chunk_scan_combined"] * 2
    for a, b in zip(got[:2] + got[3:], expected[:2] + expected[3:], strict=True):
        torch.testing.assert_close(a, b, **TOL64)
    for key in expected[2]:
        torch.testing.assert_close(got[2][key], expected[2][key], **TOL64)


@needs_refs
def test_mamba_on_the_kernels_equals_the_torch_path(monkeypatch):
    """``mamba`` routed to the kernels' mapping equals ``mamba`` on mixerlab's path: outputs and
    states over two calls (the second, from a state, on mixerlab's scan: the kernel has no initial
    state) and the input gradient of the first call's output."""
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("mamba", dim=16, state_dim=4, chunk_size=8).double()
    x = torch.randn(2, 13, 16, dtype=torch.float64, requires_grad=True)

    def run():
        y1, s1 = mixer(x[:, :6])
        (dx,) = torch.autograd.grad(y1.square().sum(), x, retain_graph=True)
        y2, s2 = mixer(x[:, 6:], state=s1)
        return y1, y2, s2, dx

    expected = run()
    calls = _route_to_references(monkeypatch)
    got = run()
    assert calls == ["causal_conv1d_fn", "selective_scan_fn", "causal_conv1d_fn"]
    for a, b in zip(got[:2] + got[3:], expected[:2] + expected[3:], strict=True):
        torch.testing.assert_close(a, b, **TOL32)
    for key in expected[2]:
        torch.testing.assert_close(got[2][key], expected[2][key], **TOL32)


@needs_refs
def test_mamba_gradient_through_the_kernels_final_state_is_an_error(monkeypatch):
    """``selective_scan_fn`` does not differentiate its final state: a loss reaching it raises
    (a silently missing term would train wrongly), while the outputs' gradient is unaffected."""
    _route_to_references(monkeypatch)
    mixer = mixerlab.create_token_mixer("mamba", dim=16, state_dim=4).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64, requires_grad=True)
    y, state = mixer(x)
    with pytest.raises(RuntimeError, match="does not backpropagate"):
        (y.sum() + state["ssm"].sum()).backward(retain_graph=True)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_backend_option_names_mamba_ssm(name):
    with pytest.raises(ConfigError, match=r"backend='triton'.*mamba_ssm"):
        mixerlab.create_token_mixer(name, dim=16, backend="triton")


def test_other_mixers_do_not_take_mamba_ssm():
    with pytest.raises(ConfigError, match="backend"):
        mixerlab.create_token_mixer("gla", dim=16, num_heads=2, backend="mamba_ssm")


def test_auto_takes_mixerlabs_path_on_cpu_and_in_float64():
    x = torch.randn(1, 4, 8)
    for choice in ("auto", "torch", "fla"):
        assert not backend.use_mamba_ssm("mamba", choice, x)
    assert not backend.use_mamba_ssm("mamba", "auto", x.double())
    assert not backend.conv_fits(x, torch.zeros(8, 4))  # a CPU input


def test_dispatch_for_a_cuda_input(monkeypatch):
    """The choice on a CUDA input (an object with a CUDA input's attributes, so that this runs on
    a CPU): ``auto`` and ``"mamba_ssm"`` take the kernels when they import; when they do not,
    ``auto`` warns and moves on while ``"mamba_ssm"`` is an error; float64 never takes them."""
    cuda_input = SimpleNamespace(is_cuda=True, dtype=torch.bfloat16, device=torch.device("cuda"))
    monkeypatch.setattr(_loader.KernelLibrary, "available", lambda library: True)
    monkeypatch.setattr(backend, "_load", lambda name: (print, None))
    assert backend.use_mamba_ssm("mamba", "auto", cuda_input)
    assert backend.use_mamba_ssm("mamba2", "mamba_ssm", cuda_input, "mamba_chunk_scan_combined")
    assert not backend.use_mamba_ssm("mamba", "fla", cuda_input)
    assert not backend.use_mamba_ssm("mamba", "torch", cuda_input)
    # where mamba-ssm's kernels are not taken, "auto" may take fla's; "mamba_ssm" never does
    monkeypatch.setattr(fla, "_load", lambda: (object(), None))
    assert fla.use_fla("mamba", "auto", cuda_input)
    assert not fla.use_fla("mamba", "mamba_ssm", cuda_input)
    cuda_input.dtype = torch.float64
    assert not backend.use_mamba_ssm("mamba", "auto", cuda_input)
    with pytest.raises(ConfigError, match=r"backend='mamba_ssm'.*cuda torch.float64"):
        backend.use_mamba_ssm("mamba", "mamba_ssm", cuda_input)
    cuda_input.dtype = torch.float16
    error = ImportError("No module named 'selective_scan_cuda'")
    monkeypatch.setattr(backend, "_load", lambda name: (None, error))
    _loader.warn_once.cache_clear()
    with pytest.warns(RuntimeWarning, match="does not import"):
        assert not backend.use_mamba_ssm("mamba", "auto", cuda_input)
    with pytest.raises(ConfigError, match=r"backend='mamba_ssm'.*does not import.*selective_scan_cuda"):
        backend.use_mamba_ssm("mamba", "mamba_ssm", cuda_input)


@pytest.mark.parametrize(
    ("channels", "width", "length", "fits"),
    [(16, 4, 9, True), (16, 2, 2, True), (16, 5, 9, False), (12, 4, 9, False), (16, 4, 3, False)],
)
def test_conv_kernel_takes_only_what_it_compiles(channels, width, length, fits, monkeypatch):
    """2 to 4 taps, channels divisible by 8, at least ``W`` tokens; anything else is ours."""
    monkeypatch.setattr(backend, "_conv_kernel_runs_on", lambda x: True)
    assert backend.conv_fits(torch.zeros(1, length, channels), torch.zeros(channels, width)) is fits


@needs_refs
@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_mamba_ssm_demanded_for_a_cpu_input_is_a_clear_error(name):
    heads = {"head_dim": 8} if name == "mamba2" else {}
    mixer = mixerlab.create_token_mixer(name, dim=16, **heads, backend="mamba_ssm")
    with pytest.raises(ConfigError, match=r"backend='mamba_ssm'.*CUDA"):
        mixer(torch.randn(1, 5, 16))


@needs_refs
def test_mamba_with_negative_eigenvalues_refuses_mamba_ssm():
    with pytest.raises(ConfigError, match="negative eigenvalues"):
        mixerlab.create_token_mixer("mamba", dim=16, allow_negative_eigenvalues=True, backend="mamba_ssm")


@needs_refs
def test_mamba_with_a_state_wider_than_the_kernel_takes_refuses_mamba_ssm():
    with pytest.raises(ConfigError, match=r"state_dim <= 256"):
        mixerlab.create_token_mixer("mamba", dim=16, state_dim=257, backend="mamba_ssm")


@pytest.mark.skipif(backend.mamba_ssm_available(), reason="mamba-ssm is installed")
def test_mamba_ssm_demanded_without_the_package_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"backend='mamba_ssm'.*not installed"):
        mixerlab.create_token_mixer("mamba", dim=16, backend="mamba_ssm")


KERNEL = {"mamba": "selective_scan_fn", "mamba2": "mamba_chunk_scan_combined"}


@needs_refs
@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_mamba_ssm_kernels_match_the_reference_on_cuda(name, kernels_match_reference_on_cuda):
    """The kernels themselves: each mixer on mamba-ssm's kernels in float32 on CUDA, over several
    of the kernels' chunks, against its per-step reference in float64 on the CPU (outputs, final
    states, input and parameter gradients; mamba2 also continued from a state). 1% bounds on
    relative (norm) errors: Triton's float32 matmuls may round through TF32."""
    error = backend._load(KERNEL[name])[1]
    if error is not None:
        pytest.skip(f"mamba-ssm's {KERNEL[name]} does not import here: {error}")
    options = (
        {"dim": 64, "state_dim": 16} if name == "mamba" else {"dim": 64, "head_dim": 32, "state_dim": 16}
    )
    kernels_match_reference_on_cuda(
        name,
        options,
        backend="mamba_ssm",
        spies=[(backend, "_kernel")],
        length=600,
        split=None if name == "mamba" else 300,
        expected_calls=KERNEL[name],
    )
