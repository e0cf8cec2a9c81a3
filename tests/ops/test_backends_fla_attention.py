"""fla's attention kernels as a backend (mixerlab/ops/backends/fla_attention.py): the mapping.

As in ``test_backends_fla.py``: fla's Triton kernels need a GPU, but fla ships a pure-PyTorch
reference for each op with its own conventions. Each mapping function runs with an adapter that
calls that reference in place of the kernel, and must equal mixerlab's per-step reference
(outputs, the state it returns, and gradients through fla's reference). The adapters only
translate the kernel's call signature to the reference's; every convention choice is the
mapping's. A deliberately wrong convention (one argument changed in the mapping's call) must fail
the same comparison, so the tolerance is tight enough to see one. The GPU test at the end runs the
kernels themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.backends import _loader
from mixerlab.ops.backends import fla_attention as backend
from mixerlab.ops.deltaformer import deltaformer_reference
from mixerlab.ops.fox import fox_reference
from mixerlab.ops.path import path_reference
from mixerlab.ops.stick_breaking import stick_breaking_reference


def _naive(op: str) -> ModuleType:
    """``fla/ops/<op>/naive.py`` loaded by path (``import fla.ops`` would import every Triton
    kernel; these references need only torch and einops)."""
    spec = importlib.util.find_spec("fla")
    path = Path(spec.submodule_search_locations[0]) / "ops" / op / "naive.py"
    module_spec = importlib.util.spec_from_file_location(f"_fla_{op}_naive", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


NAIVE = None  # the package is an optional extra (mixerlab[fla])
if importlib.util.find_spec("fla") is not None:
    NAIVE = {op: _naive(op) for op in ("forgetting_attn", "stickbreaking_attn", "path_attn", "deltaformer")}

needs_fla = pytest.mark.skipif(NAIVE is None, reason="flash-linear-attention is not installed")
TOL = {"rtol": 2e-4, "atol": 2e-5}  # fla's references compute in float32 (stick-breaking's in float64)
B, T, H = 2, 19, 3


def forgetting_attn_as_kernel(q, k, v, g, scale=None):
    """``parallel_forgetting_attn``'s signature on ``naive_forgetting_attn`` (the same)."""
    return NAIVE["forgetting_attn"].naive_forgetting_attn(q, k, v, g, scale=scale)


def stickbreaking_attn_as_kernel(q, k, v, scale=None, attend_current=False):
    """``parallel_stickbreaking_attn``'s signature on ``naive_stickbreaking_attn`` (the same)."""
    return NAIVE["stickbreaking_attn"].naive_stickbreaking_attn(
        q, k, v, scale=scale, attend_current=attend_current
    )


def path_attn_as_kernel(q, k, v, w, beta, g=None, scale=None, use_cache=False):
    """``parallel_path_attn``'s signature on ``naive_path_attn``, which needs a gate (zero: no
    forgetting) and has no key cache; its chunk of 8 makes T=19 span three chunks."""
    g = q.new_zeros(q.shape[:3]) if g is None else g
    return NAIVE["path_attn"].naive_path_attn(q, k, v, w, beta, g, scale, chunk_size=8), None


def deltaformer_as_kernel(a, k, v, beta):
    """``ParallelDeltaformerFunction`` (``a, k, v, beta -> u``) on ``naive_deltaformer_attn``, which
    returns only the read-out ``o = A u`` of ``u`` by causal softmax attention of its ``a`` over
    ``k``. ``A`` is lower triangular with a positive diagonal, built with the reference's
    own ``tril_softmax``, so ``u = A^{-1} o`` by one triangular solve."""
    naive = NAIVE["deltaformer"]
    o = naive.naive_deltaformer_attn(a, k, v, beta)
    scores = torch.einsum("bthd,bshd->bhts", a, k) * a.shape[-1] ** -0.5
    read = naive.tril_softmax(scores, strict=False)  # [B, H, T, T]
    u = torch.linalg.solve_triangular(read, o.transpose(1, 2), upper=False)
    return u.transpose(1, 2)


def rand(*shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _inputs(seed: int, K: int = 4):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (rand(B, T, H, K, generator=g).requires_grad_() for _ in range(3))
    return g, q, k, v


def _assert_same(outputs, references, inputs):
    """Outputs equal, and the gradients of one random projection of them to every input."""
    weights = [torch.randn_like(o) for o in references]
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    loss_ref = sum((o * w).sum() for o, w in zip(references, weights))
    grads = torch.autograd.grad(loss, inputs)
    grads_ref = torch.autograd.grad(loss_ref, inputs)
    for o, o_ref in zip(outputs, references):
        torch.testing.assert_close(o, o_ref, **TOL)
    for d, d_ref in zip(grads, grads_ref):
        torch.testing.assert_close(d, d_ref, **TOL)


def _fox_case(seed, kernel):
    g, q, k, v = _inputs(seed)
    log_f = torch.nn.functional.logsigmoid(rand(B, T, H, generator=g) + 2).requires_grad_()
    o = backend.fox_fla(q, k, v, log_f, kernel=kernel)
    return [o], [fox_reference(q, k, v, log_f)], (q, k, v, log_f)


def _stick_breaking_case(seed, kernel):
    _, q, k, v = _inputs(seed)
    o = backend.stick_breaking_fla(q, k, v, kernel=kernel)
    return [o], [stick_breaking_reference(q, k, v)], (q, k, v)


def _path_case(seed, kernel):
    g, q, k, v = _inputs(seed)
    w = torch.nn.functional.normalize(rand(B, T, H, 4, generator=g), dim=-1).requires_grad_()
    beta = (2 * torch.rand(B, T, H, generator=g, dtype=torch.float64)).requires_grad_()  # (0, 2)
    o, keys, values = backend.path_fla(q, k, v, w, beta, kernel=kernel)
    empty = k.new_zeros(B, 0, H, 4)
    o_ref, keys_ref, values_ref = path_reference(q, k, v, w, beta, empty, empty)
    return [o, keys, values], [o_ref, keys_ref, values_ref], (q, k, v, w, beta)


def _deltaformer_case(seed, kernel):
    g, q, k, v = _inputs(seed)
    beta = torch.rand(B, T, H, generator=g, dtype=torch.float64).requires_grad_()
    o, keys, u = backend.deltaformer_fla(q, k, v, beta, kernel=kernel)
    empty = k.new_zeros(B, 0, H, 4)
    o_ref, keys_ref, u_ref = deltaformer_reference(q, k, v, beta, empty, empty)
    return [o, keys, u], [o_ref, keys_ref, u_ref], (q, k, v, beta)


CASES = {
    "fox": (_fox_case, forgetting_attn_as_kernel),
    "stick_breaking": (_stick_breaking_case, stickbreaking_attn_as_kernel),
    "path": (_path_case, path_attn_as_kernel),
    "deltaformer": (_deltaformer_case, deltaformer_as_kernel),
}


@needs_fla
@pytest.mark.parametrize("op", sorted(CASES))
def test_mapping_matches_reference(op):
    case, kernel = CASES[op]
    _assert_same(*case(0, kernel))


def _wrong(kernel, **changes):
    """``kernel`` with keyword arguments of the mapping's call replaced."""
    return lambda *args, **kwargs: kernel(*args, **{**kwargs, **changes})


WRONG = {
    "fox: unscaled scores": ("fox", _wrong(forgetting_attn_as_kernel, scale=1.0)),
    "fox: gate as a cumulative sum": (
        "fox",
        lambda q, k, v, g, **kw: forgetting_attn_as_kernel(q, k, v, g.cumsum(1), **kw),
    ),
    "stick_breaking: query skips its own key": (
        "stick_breaking",
        _wrong(stickbreaking_attn_as_kernel, attend_current=False),
    ),
    "path: w in place of k": (
        "path",
        lambda q, k, v, w, beta, **kw: path_attn_as_kernel(q, w, v, w, beta, **kw),
    ),
    # fla's own deltaformer_attn reads the memory with q (the same q as the case's: same seed)
    "deltaformer: memory read with q": (
        "deltaformer",
        lambda a, k, v, beta: deltaformer_as_kernel(_inputs(0)[1].detach(), k, v, beta),
    ),
}


@needs_fla
@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_convention_fails(name):
    """Each mapped convention matters: change one and the comparison above fails."""
    op, kernel = WRONG[name]
    outputs, references, _ = CASES[op][0](0, kernel)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(outputs[0], references[0], **TOL)


LAYERS = {
    "fox": {"dim": 12, "num_heads": 2},
    "stick_breaking": {"dim": 12, "num_heads": 2},
    "path": {"dim": 32, "num_heads": 2, "chunk_size": 8},  # head sizes fla's kernels take
    "deltaformer": {"dim": 32, "num_heads": 2},
}
STAND_INS = {
    "forgetting_attn": SimpleNamespace(parallel_forgetting_attn=forgetting_attn_as_kernel),
    "stickbreaking_attn": SimpleNamespace(parallel_stickbreaking_attn=stickbreaking_attn_as_kernel),
    "path_attn": SimpleNamespace(parallel_path_attn=path_attn_as_kernel),
}


@needs_fla
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_on_the_fla_path_equals_the_torch_path(name, monkeypatch):
    """The whole mixer with its first call routed to fla (references standing in for the kernels)
    and its second call, from the cache, on mixerlab's form, equals the same mixer on mixerlab's
    path: outputs, the state, the input gradient through both calls and every parameter's."""
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **LAYERS[name]).double()
    x = torch.randn(2, 13, mixer.dim, dtype=torch.float64, requires_grad=True)

    def run():
        y1, state1 = mixer(x[:, :6])
        y2, state2 = mixer(x[:, 6:], state=state1)
        loss = y2.square().sum() + y1.sum() + sum(s.square().sum() for s in state2.values())
        return y1, y2, state2, torch.autograd.grad(loss, [x, *mixer.parameters()])

    expected = run()
    calls = []

    def module(op):
        calls.append(op)
        return STAND_INS[op]

    monkeypatch.setattr(backend, "_module", module)
    monkeypatch.setattr(
        backend, "_deltaformer_kernel", lambda *a: calls.append("deltaformer") or deltaformer_as_kernel(*a)
    )
    monkeypatch.setattr(backend, "use_fla", lambda owner, choice, x, **options: True)
    actual = run()
    assert calls, "the fla path was not taken"
    for a, e in zip(actual[:2], expected[:2]):
        torch.testing.assert_close(a, e, **TOL)
    for key in expected[2]:
        torch.testing.assert_close(actual[2][key], expected[2][key], **TOL)
    for a, e in zip(actual[3], expected[3]):
        torch.testing.assert_close(a, e, **TOL)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backend_option_is_checked(name):
    with pytest.raises(ConfigError, match="backend"):
        mixerlab.create_token_mixer(name, dim=16, num_heads=2, backend="triton")


@needs_fla
@pytest.mark.parametrize(("name", "head_dim"), [("path", 12), ("deltaformer", 24), ("fox", 320)])
def test_fla_demanded_for_a_head_size_its_kernel_lacks_is_a_clear_error(name, head_dim):
    with pytest.raises(ConfigError, match=r"head_dim=.*backend='fla'"):
        mixerlab.create_token_mixer(name, dim=2 * head_dim, num_heads=2, backend="fla")
    # "auto" accepts it and keeps mixerlab's form for such a layer
    mixer = mixerlab.create_token_mixer(name, dim=2 * head_dim, num_heads=2, backend="auto")
    assert not backend.use_fla_attention(
        name, name, "auto", torch.randn(1, 3, 2), head_dim=head_dim, cached=0
    )
    assert mixer.backend == "auto"


def test_a_cached_call_keeps_mixerlabs_form(monkeypatch):
    """fla's kernels read queries and keys at the same positions: a call from a cache is ours."""
    monkeypatch.setattr(backend, "use_fla", lambda owner, choice, x, **options: True)
    x = torch.randn(1, 3, 2)
    assert backend.use_fla_attention("fox", "fox", "fla", x, head_dim=64, cached=0)
    assert not backend.use_fla_attention("fox", "fox", "fla", x, head_dim=64, cached=5)
    assert not backend.use_fla_attention("path", "path", "fla", x, head_dim=48, cached=0)


@needs_fla
def test_fla_demanded_for_a_cpu_input_is_a_clear_error():
    mixer = mixerlab.create_token_mixer("fox", dim=16, num_heads=2, backend="fla")
    with pytest.raises(ConfigError, match=r"backend='fla'.*CUDA"):
        mixer(torch.randn(1, 5, 16))


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_path_keys_are_the_references_cache(chunk_size):
    """mixerlab's differentiable PaTH key cache for the fla path, against the per-step loop, for
    any chunk length (T = 19 is not a multiple of 4)."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (rand(B, T, H, 4, generator=g) for _ in range(3))
    w = torch.nn.functional.normalize(rand(B, T, H, 4, generator=g), dim=-1)
    beta = 2 * torch.rand(B, T, H, generator=g, dtype=torch.float64)
    empty = k.new_zeros(B, 0, H, 4)
    _, keys_ref, _ = path_reference(q, k, v, w, beta, empty, empty)
    torch.testing.assert_close(backend.path_keys(k, w, beta, chunk_size=chunk_size), keys_ref)


def _has_fla_layers() -> bool:
    # flash-linear-attention ships fla.layers (DeltaFormer's kernel imports it); fla-core does not
    spec = importlib.util.find_spec("fla")
    return spec is not None and any((Path(p) / "layers").is_dir() for p in spec.submodule_search_locations)


INTERPRETED = ("fox", "stick_breaking", "path", *(("deltaformer",) if _has_fla_layers() else ()))


def _interpreted_cases() -> dict[str, tuple]:
    """``name: (mapping call, reference call, float64 inputs)`` for the child process that runs
    fla's real Triton kernels in Triton's CPU interpreter (``_triton_interpreter.main``)."""
    g = torch.Generator().manual_seed(0)
    Bs, Ts, Hs, K = 2, 40, 2, 16
    q, k, v = (rand(Bs, Ts, Hs, K, generator=g) for _ in range(3))
    log_f = torch.nn.functional.logsigmoid(rand(Bs, Ts, Hs, generator=g) + 2)
    w = torch.nn.functional.normalize(rand(Bs, Ts, Hs, K, generator=g), dim=-1)
    beta = torch.rand(Bs, Ts, Hs, generator=g, dtype=torch.float64)
    empty = q.new_zeros(Bs, 0, Hs, K)
    cases = {
        "fox": (backend.fox_fla, fox_reference, (q, k, v, log_f)),
        "stick_breaking": (backend.stick_breaking_fla, stick_breaking_reference, (q, k, v)),
        "path": (
            backend.path_fla,
            lambda *a: path_reference(*a, empty, empty),
            (q, k, v, w, 2 * beta),
        ),
        "deltaformer": (
            backend.deltaformer_fla,
            lambda *a: deltaformer_reference(*a, empty, empty),
            (q, k, v, beta),
        ),
    }
    return {name: case for name, case in cases.items() if name in INTERPRETED}


@needs_fla
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_fla_kernels_in_tritons_interpreter_match_the_reference(run_in_triton_interpreter):
    """fla's kernels themselves on a CPU: the mapping functions with the real Triton kernels,
    run by Triton's interpreter (about 30 s), equal the float64 reference to float32 rounding,
    outputs (PaTH's and DeltaFormer's states too) and the gradients of every input. DeltaFormer's
    kernel needs flash-linear-attention's ``fla.layers``: with fla-core alone it is left out."""
    worst = run_in_triton_interpreter(__file__)
    assert set(worst) == set(INTERPRETED)
    for name, error in worst.items():
        assert not isinstance(error, str) and error < 1e-5, (name, error)


@needs_fla
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_fla_kernels_match_the_reference_on_cuda(name, kernels_match_reference_on_cuda):
    """The kernels themselves: each mixer on fla's kernels in float32 on CUDA (head size 32, over
    several of the kernels' tiles; the second call continues from the cache on mixerlab's form)
    against its per-step reference in float64 on the CPU: outputs, state, input and parameter
    gradients. Triton's float32 matmuls may round through TF32 (PaTH's through float16), hence
    the bound of 1% on relative (norm) errors."""
    kernels_match_reference_on_cuda(
        name,
        {**LAYERS[name], "dim": 64},
        backend="fla",
        spies=[(backend, "_module"), (backend, "_deltaformer_kernel")],
        split=130,
    )


def test_deltaformer_needs_flash_linear_attention_beyond_fla_core(monkeypatch):
    """DeltaFormer's kernel module imports ``fla.layers``, which fla-core lacks: with fla-core
    alone, ``"auto"`` keeps DeltaFormer on mixerlab's form (after a warning naming the package) while
    the other attention ops still go to fla, and ``"fla"`` is an error naming the package."""
    from mixerlab.ops.backends import fla as fla_backend

    monkeypatch.setattr(fla_backend.LIBRARY.__class__, "available", lambda self: True)
    monkeypatch.setattr(fla_backend, "_load", lambda: (object(), None))
    missing = ModuleNotFoundError("No module named 'fla.layers'")

    def load(module):
        return (None, missing) if module == backend.DELTAFORMER_MODULE else (object(), None)

    monkeypatch.setattr(fla_backend, "load", load)
    _loader.warn_once.cache_clear()
    cuda_input = SimpleNamespace(is_cuda=True, dtype=torch.bfloat16, device=torch.device("cuda"))
    sizes = {"head_dim": 16, "cached": 0}
    with pytest.warns(RuntimeWarning, match="pip install flash-linear-attention"):
        assert not backend.use_fla_attention("deltaformer", "deltaformer", "auto", cuda_input, **sizes)
    assert backend.use_fla_attention("fox", "fox", "auto", cuda_input, **sizes)
    with pytest.raises(ConfigError, match=r"backend='fla'.*flash-linear-attention"):
        backend.use_fla_attention("deltaformer", "deltaformer", "fla", cuda_input, **sizes)


if __name__ == "__main__":  # the child process of the interpreter test (TRITON_INTERPRET at import)
    import _triton_interpreter

    _triton_interpreter.main(_interpreted_cases)
