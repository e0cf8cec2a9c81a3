"""flash-linear-attention (``fla``) as a backend of mixerlab's ops: the mapping of conventions.

The library of "Gated Linear Attention Transformers with Hardware-Efficient Training"
(arXiv:2312.06635) ships Triton kernels for the operators below. Each function here takes the
arguments of mixerlab's op in mixerlab's conventions and returns what that op returns, so a layer
swaps one call for the other. What is mapped, and how:

==========================  ====================================  =================================
mixerlab op                 fla kernel                            conventions mapped
==========================  ====================================  =================================
linear attention, no decay  ``chunk_simple_gla(g=None)``          ``scale=1``: mixerlab's layers
(``linear_attention``,                                            scale ``q`` (or ``k``) themselves
``based``)                                                        and the op reads ``q_t S_t`` as is
scalar decay per head       ``chunk_simple_gla(g=log_decay)``     ``log_decay: [B, T, H]`` is fla's
(``retention``)                                                   ``g`` (log space, ``<= 0``) as is
decay per key channel       ``chunk_gla(g=log_decay)``            ``log_decay: [B, T, H, K]`` is
(``gla``, ``hgrn2``)                                              fla's ``gk`` (log space) as is
delta rule (``deltanet``)   ``chunk_delta_rule``                  ``scale`` passed through (both
                                                                  default to ``K^-1/2``)
gated delta rule            ``chunk_gated_delta_rule``            ``g``: log decay ``[B, T, H]``;
(``gated_deltanet``)                                              ``beta`` given, not in-kernel
Kimi delta rule (``kda``)   ``chunk_kda``                         ``g``: log decay ``[B, T, H, K]``;
                                                                  gate, ``beta``, norms: layer's
SSD (``mamba2``)            ``chunk_simple_gla``                  ``q = C``, ``k = B``, ``v = dt x``,
                                                                  ``g = dt A``; state transposed
RWKV-6 ``wkv`` (``rwkv6``)  ``chunk_rwkv6``                       ``w`` = log decay, ``u`` = bonus,
                                                                  ``scale=1``
RWKV-7 (``rwkv7``)          ``chunk_rwkv7`` (generalized delta    ``a = -kappa``, ``b = kappa a``,
                            rule, diagonal plus rank one)         ``w`` = log decay, ``scale=1``;
                                                                  the decay floor is fla's
                                                                  ``lower_bound`` (64-step chunks)
Comba (``comba``)           ``chunk_comba``                       fla's kernels read ``p`` before
                                                                  the decay: ``p exp(g)`` is fla's
                                                                  ``p``; ``(p, g, beta)`` order;
                                                                  scale ``K^-1/2``
DeltaProduct                ``chunk_gated_delta_product``         the ``n_h`` steps of a token as
(``gated_deltaproduct``)                                          consecutive rows ``t n_h + j``;
                                                                  gate and query once per token
gated slots (``gsa``)       ``chunk_gsa``                         ``s = 1 - alpha``, ``g = log
                                                                  alpha``, ``scale=1``; key slots
                                                                  transposed to fla's ``[K, M]``
log-linear Mamba-2          ``chunk_log_linear_attn``             as SSD, ``level_scales = lambda``;
(``log_linear``)                                                  from the first token only: the
                                                                  bucket states do not map (below)
HGRN (``hgrn``, complex)    ``chunk_hgrn`` (real decay)           ``h_t = e^{i theta t} g_t``: the
                                                                  phase moves onto the inputs, re
                                                                  and im are 2 real channels
selective scan (``mamba``)  ``chunk_gla``                         one head per channel: ``q = C``,
                                                                  ``k = B``, ``v = dt x`` (one
                                                                  value), ``g = dt A``
==========================  ====================================  =================================

Not mapped, and why:

- ``mesanet`` (``chunk_mesa_net``): fla solves ``(H^kk_t + Lambda) x_t = q_t`` by a fixed
  number of conjugate-gradient steps whose step sizes carry ``1e-5`` guards (``alpha = |r|^2 /
  (p^T A p + 1e-5)``), so the iteration stalls once ``|r|^2`` nears ``1e-5``; mixerlab's op
  solves exactly (Cholesky). fla's reference CG (``naive_mesa_net_CG``, the kernel's algorithm
  and guards) against mixerlab's exact op, ``K = 64``, ``T = 256`` or ``512``, unit-norm ``q,
  k``, ``lambda`` 0.25 to 1: relative output errors of 5e-4 to 1e-3 with fla's 30 steps, still
  3e-4 to 7e-4 with 64 (``benchmarks/mesa_cg_agreement.py``). That is fla's CG tolerance, but
  a thousand times float32's rounding, so ``backend="auto"`` would change results silently; the
  layer keeps its exact solve.
- ``log_linear`` states: fla's state is a Fenwick tree over whole 64-token chunks plus the raw
  inputs of the unfinished chunk; mixerlab's is the per-token buckets of the last query (which a
  one-token step updates). Neither is a function of the other's sums, so only calls from the
  first token (training, prefill) are mapped; their final buckets are formed directly.

Shared by all: both libraries use ``[B, T, H, K]`` inputs (fla >= 0.2 is not head-first) and a
state ``[B, H, K, V]`` (key side first; fla's ``state_v_first=False``), so no transposes are
needed but SSD's. Odd ``K`` or ``V`` (Based's ``1 + F + F^2`` features, the normaliser column) are
padded with zeros to even sizes, which fla's 16-bit backward requires, and sliced back. fla's
kernels return the final state in float32; it is cast back to the dtype of the state that came
in (or of ``q``), as mixerlab's forms do. fla's chunk length is its own (64); mixerlab's
``chunk_size`` only shapes mixerlab's forms and never changes the result beyond rounding.
mixerlab's normalised linear attention carries ``z`` as an extra value column of ones (see
``layers/token_mixers/linear_attention.py``), so it needs no separate normaliser kernel.

A known defect is routed around, never computed through: fla refuses the backward of the gated
``chunk_bwd_dqkwg`` (used by ``chunk_simple_gla`` with a gate, ``chunk_gated_delta_rule``,
``chunk_gated_delta_product`` and ``chunk_comba``) on
Hopper GPUs with Triton >= 3.4.0 and < 3.7.1, because that Triton miscompiles it. There the
layer falls back to mixerlab's own form, with a warning, whenever gradients are needed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from mixerlab.ops.backends._loader import OWN_CHOICES, KernelLibrary, load, require, warn_once

BACKENDS = (*OWN_CHOICES, "fla")
#: dtypes fla's kernels take (Triton's ``tl.dot`` has no float64).
FLA_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: ... and those of the kernels that refuse float32 (``chunk_gated_delta_product``).
FLA_HALF_DTYPES = (torch.bfloat16, torch.float16)
LIBRARY = KernelLibrary(
    choice="fla",
    package="fla",
    label="fla",
    install="fla is not installed (pip install 'mixerlab[fla]': fla-core, whose kernels need Triton)",
    kernels="fla's Triton kernels",
    fallback="use 'auto' to fall back to mixerlab's path",
    auto_fallback="using torch",
)


def fla_available() -> bool:
    """Whether the ``fla`` package is installed; cheap (finds it, does not import it)."""
    return LIBRARY.available()


def check_backend(owner: str, backend: Any) -> None:
    """Validate a mixer's ``backend`` option at construction time."""
    LIBRARY.check(owner, backend, BACKENDS)


def use_fla(
    owner: str,
    backend: str,
    x: Tensor,
    *,
    dtypes: tuple[torch.dtype, ...] = FLA_DTYPES,
    gated: tuple[Tensor | None, ...] = (),
    module: str | None = None,
) -> bool:
    """Whether this call of ``owner``'s fast mode goes to fla, for the input ``x``.

    ``"fla"`` with an input the kernels cannot take (not on CUDA, or a dtype outside ``dtypes``:
    float64 always, float32 for kernels that refuse it) is an error naming the field; ``"auto"``
    quietly takes mixerlab's path for such inputs. Any other choice (``"torch"``, another
    library's) is mixerlab's path. ``gated``: the call's inputs with its gate last, for the
    kernels whose gated backward fla refuses on some GPUs (:func:`gated_backward_refused`).
    ``module``: a kernel module that must import besides ``fla.ops`` (DeltaFormer's imports
    ``fla.layers``, which flash-linear-attention ships and fla-core does not).
    """
    loader = _load if module is None else functools.partial(_load_with, module)
    return LIBRARY.use(owner, backend, x, dtypes, loader) and not gated_backward_refused(owner, *gated)


def _load() -> tuple[Any, ImportError | None]:
    """``fla.ops`` (imported once: it compiles nothing, but imports every kernel), or the error."""
    return load("fla.ops")


#: kernels that ``fla.ops`` does not re-export (fla 0.6), by the subpackage that holds them
_SUBPACKAGE = {"chunk_hgrn": "fla.ops.hgrn"}


def _load_with(module: str) -> tuple[Any, ImportError | None]:
    """``fla.ops`` and then ``module``, or the first import error (naming the package to install
    where ``module`` needs more than fla-core)."""
    found, error = _load()
    if error is None:
        found, error = load(module)
        if error is not None:
            needs = "it needs the full package: pip install flash-linear-attention"
            error = ImportError(f"{module}: {error}; {needs}")
    return found, error


def _kernel(name: str) -> Callable[..., tuple[Tensor, Tensor]]:
    return getattr(require(_SUBPACKAGE.get(name, "fla.ops")), name)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def gated_backward_broken(*tensors: Tensor) -> bool:
    """fla's gated ``chunk_bwd_dqkwg`` defect: a Hopper GPU (sm_90), Triton in [3.4.0, 3.7.1),
    and a backward to come (grad enabled and some input requires it)."""
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
        return False
    x = tensors[0]
    if not x.is_cuda or torch.cuda.get_device_capability(x.device) != (9, 0):
        return False
    try:
        import triton
    except ImportError:
        return False
    return (3, 4, 0) <= _version(triton.__version__) < (3, 7, 1)


def gated_backward_refused(owner: str, *tensors: Tensor | None) -> bool:
    """True (after a warning) where fla would refuse this call's backward. ``tensors`` are the
    call's inputs, its gate last: only a scalar gate ``[B, T, H]`` runs on the kernels with the
    defect (``chunk_simple_gla``, ``chunk_gated_delta_rule``, ``chunk_gated_delta_product``,
    ``chunk_comba``); per-channel gates ``[B, T, H, K]`` run on ``chunk_gla`` and ``chunk_kda``."""
    gate = tensors[-1] if tensors else None
    if gate is None or gate.dim() != 3 or not gated_backward_broken(*[t for t in tensors if t is not None]):
        return False
    warn_once(
        f"{owner}: fla's gated backward is wrong with Triton < 3.7.1 on Hopper GPUs and fla refuses "
        "it; using mixerlab's own chunked form (upgrade Triton to >= 3.7.1 for fla's kernels)",
        stacklevel=4,  # the layer, past this function and use_fla
    )
    return True


def _state_in(state: Tensor | None) -> Tensor | None:
    # fla's kernels take (and some assert) a float32 state: they accumulate it in float32 anyway.
    # float64 stays float64 only for fla's pure-PyTorch references in the mapping tests.
    if state is None or state.dtype == torch.float64:
        return state
    return state.float()


def _pad_last(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width)) if width else x


def linear_attention_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor | None,
    initial_state: Tensor | None,
    *,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """``S_t = diag(exp(log_decay_t)) S_{t-1} + k_t^T v_t``, ``o_t = q_t S_t`` on fla's kernels.

    The same contract as :func:`mixerlab.ops.linear_attention.linear_attention_chunk`: ``q, k:
    [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_decay``: ``None``, ``[B, T, H]`` or ``[B, T, H, K]``,
    state ``[B, H, K, V]``; returns ``(o: [B, T, H, V], S: [B, H, K, V])``. ``kernel`` replaces the
    fla function chosen from the decay's shape (``chunk_simple_gla`` or ``chunk_gla``, same
    signature), e.g. by fla's pure-PyTorch reference in the mapping tests.
    """
    state_dtype = q.dtype if initial_state is None else initial_state.dtype
    q, k = q.to(v.dtype), k.to(v.dtype)  # one dtype for the kernels' matmuls (rotary may widen)
    K, V = q.shape[-1], v.shape[-1]
    per_channel = log_decay is not None and log_decay.dim() == 4
    if kernel is None:
        kernel = _kernel("chunk_gla" if per_channel else "chunk_simple_gla")
    # fla's 16-bit backward needs even K and V (Triton mis-handles odd tails); zero key channels
    # add nothing to q_t . k_s and zero value columns read out as zeros, so pad and slice back.
    pad_k, pad_v = K % 2, V % 2
    if pad_k or pad_v:
        q, k, v = _pad_last(q, pad_k), _pad_last(k, pad_k), _pad_last(v, pad_v)
        if per_channel:
            log_decay = _pad_last(log_decay, pad_k)
        if initial_state is not None:
            initial_state = F.pad(initial_state, (0, pad_v, 0, pad_k))
    o, S = kernel(
        q,
        k,
        v,
        g=log_decay,
        scale=1.0,  # the op reads q_t S_t: any scaling was applied to q or k by the layer
        initial_state=_state_in(initial_state),
        output_final_state=True,
    )
    return o[..., :V].to(v.dtype), S[..., :K, :V].to(state_dtype)


def delta_rule_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor | None = None,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """The (gated) delta rule on fla's kernels, with the contract of
    :func:`mixerlab.ops.delta_rule.delta_rule_chunk`::

        S_t = exp(g_t) S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,    o_t = S_t (scale q_t)

    (papers' ``[V, K]`` orientation; both libraries store ``[B, H, K, V]``). ``q, k: [B, T, H, K]``,
    ``v: [B, T, H, V]``, ``beta, g: [B, T, H]``. fla's gated kernel is ``(q, k, v, g, beta)``, the
    plain one ``(q, k, v, beta)``; ``beta`` is passed as computed by the layer (fla's in-kernel
    sigmoid is off), so ``beta`` in ``[0, 2]`` (negative eigenvalues) needs no kernel flag.

    A per-channel ``g: [B, T, H, K]`` is Kimi Delta Attention (arXiv:2510.26692), ``S_t = (I -
    beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T`` in the ``[K, V]`` layout, which
    is fla's ``chunk_kda`` with the same arguments (its gate and ``beta`` activations, ``lower_bound``
    and ``safe_gate`` off: mixerlab's layer computes them).
    """
    K = q.shape[-1]
    scale = K**-0.5 if scale is None else scale
    state_dtype = q.dtype if state is None else state.dtype
    q, k = q.to(v.dtype), k.to(v.dtype)
    common = {"scale": scale, "initial_state": _state_in(state), "output_final_state": True}
    if g is None:
        kernel = kernel or _kernel("chunk_delta_rule")
        o, S = kernel(q, k, v, beta, **common)
    else:
        kernel = kernel or _kernel("chunk_kda" if g.dim() == 4 else "chunk_gated_delta_rule")
        o, S = kernel(q, k, v, g, beta, **common)
    return o.to(v.dtype), S.to(state_dtype)


def selective_scan_fla(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    state: Tensor | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba's selective scan (arXiv:2312.00752) as gated linear attention on fla's ``chunk_gla``,
    with the contract of :func:`mixerlab.ops.selective_scan.selective_scan_chunk` (no negative
    eigenvalues)::

        h_t[e, n] = exp(dt_t[e] A[e, n]) h_{t-1}[e, n] + dt_t[e] x_t[e] B_t[n],   y_t[e] = C_t . h_t[e]

    is, per channel ``e`` taken as a head with ``K = N`` keys and one value, GLA's
    ``S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t``, ``o_t = q_t S_t`` with ``q = C``, ``k = B``
    (shared by all heads), ``v = dt x`` and the log decay ``g = dt A``. Shapes: ``x, dt: [B, T, E]``,
    ``A: [E, N]``, ``B, C: [B, T, N]``, ``state: [B, E, N]``; returns ``(y: [B, T, E], [B, E, N])``.
    """
    batch, T, E = x.shape
    N = A.shape[1]
    q = C[:, :, None, :].expand(batch, T, E, N)
    k = B[:, :, None, :].expand(batch, T, E, N)
    v = (dt * x)[..., None]  # [B, T, E, 1]
    log_decay = dt[..., None] * A  # [B, T, E, N]
    S0 = None if state is None else state[..., None]  # [B, E, N, 1]
    o, S = linear_attention_fla(q, k, v, log_decay, S0, kernel=kernel)
    return o[..., 0], S[..., 0]


def ssd_fla(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B_: Tensor,
    C_: Tensor,
    *,
    state: Tensor | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba-2's SSD (arXiv:2405.21060) on fla's ``chunk_simple_gla``, with the contract of
    :func:`mixerlab.ops.ssd.ssd_chunk`::

        h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,    y_t = h_t C_t       (h: [P, N] per head)

    is simple GLA (one scalar decay per head) with ``q = C``, ``k = B`` (one group: shared by the
    heads), ``v = dt x`` and ``g = dt A``; fla's state ``[K, V] = [N, P]`` is the transpose of
    SSD's ``[P, N]``. Shapes: ``x: [B, T, H, P]``, ``dt: [B, T, H]``, ``A: [H]``, ``B_, C_:
    [B, T, N]``, ``state: [B, H, P, N]``; returns ``(y: [B, T, H, P], [B, H, P, N])``.
    """
    batch, T, H, _ = x.shape
    N = B_.shape[-1]
    q = C_[:, :, None, :].expand(batch, T, H, N)
    k = B_[:, :, None, :].expand(batch, T, H, N)
    S0 = None if state is None else state.transpose(-1, -2)  # [B, H, N, P]
    o, S = linear_attention_fla(q, k, dt[..., None] * x, dt * A, S0, kernel=kernel)
    return o, S.transpose(-1, -2)


def rwkv6_fla(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    bonus: Tensor,
    *,
    initial_state: Tensor | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """RWKV-6's ``wkv`` (Finch, arXiv:2404.05892) on fla's ``chunk_rwkv6``, with the contract of
    :func:`mixerlab.ops.rwkv6.rwkv6_chunk`::

        o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),     S_t = diag(w_t) S_{t-1} + k_t^T v_t

    fla's ``w`` is the log decay (``log w_t``, as mixerlab's ``log_decay``) and its ``u`` the bonus;
    ``scale=1`` because the op reads ``r_t`` as given. Shapes: ``r, k, log_decay: [B, T, H, K]``,
    ``v: [B, T, H, V]``, ``bonus: [H, K]``, state ``[B, H, K, V]``.
    """
    state_dtype = r.dtype if initial_state is None else initial_state.dtype
    r, k = r.to(v.dtype), k.to(v.dtype)
    kernel = kernel or _kernel("chunk_rwkv6")
    o, S = kernel(
        r,
        k,
        v,
        log_decay,
        bonus,
        scale=1.0,
        initial_state=_state_in(initial_state),
        output_final_state=True,
    )
    return o.to(v.dtype), S.to(state_dtype)


def hgrn_fla(
    log_decay: Tensor,
    theta: Tensor,
    b: Tensor,
    initial_state: Tensor | None = None,
    *,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """HGRN's complex recurrence (arXiv:2311.04823) on fla's real-valued ``chunk_hgrn``, with the
    contract of :func:`mixerlab.ops.linear_scan.linear_scan_reference` for ``a_t = lambda_t
    e^{i theta}``::

        h_t = lambda_t e^{i theta} h_{t-1} + b_t          (complex, per channel; theta fixed in t)

    fla's kernel is ``g_t = exp(log_decay_t) g_{t-1} + x_t`` with a real decay. The substitution
    ``h_t = e^{i theta t} g_t`` (``t = 1..T`` counted from this call's first token, ``g_0 =
    h_0``) gives exactly ``g_t = lambda_t g_{t-1} + e^{-i theta t} b_t``: the rotation moves from
    the decay onto the inputs, and the real and imaginary parts of ``g`` are two real channels
    sharing ``lambda_t``. The rotations are unitary, so ``|g_t| = |h_t|`` and nothing grows.
    ``theta t`` is formed in float64 and reduced modulo ``2 pi`` before its sine and cosine, so a
    long call keeps the phase's float32 precision.

    Shapes: ``log_decay: [B, T, D]`` (``log lambda_t <= 0``), ``theta: [D]``, ``b: [B, T, D]``
    complex, ``initial_state: [B, D]`` complex; returns ``(h: [B, T, D], h_T: [B, D])`` complex.
    ``chunk_hgrn``'s backward gives no gradient to its initial state, so a state that needs one
    goes to ``fused_recurrent_hgrn`` (same signature), whose backward does.
    """
    T = b.shape[1]
    real = b.real.dtype
    steps = torch.arange(1, T + 1, device=b.device, dtype=torch.float64)
    phase = torch.remainder(theta.to(torch.float64) * steps[:, None], 2 * torch.pi)  # [T, D]
    rotation = torch.polar(torch.ones_like(phase, dtype=real), phase.to(real))  # e^{i theta t}
    x_in = rearrange(torch.view_as_real(b * rotation.conj()), "b t d two -> b t (d two)")
    g_in = repeat(log_decay.to(real), "b t d -> b t (d two)", two=2)
    s0 = None
    if initial_state is not None:
        s0 = rearrange(torch.view_as_real(initial_state.to(b.dtype)), "b d two -> b (d two)")
    if kernel is None:
        needs_state_grad = s0 is not None and s0.requires_grad and torch.is_grad_enabled()
        kernel = _kernel("fused_recurrent_hgrn" if needs_state_grad else "chunk_hgrn")
    # the final state is read from the outputs (its gradient then flows through them; the chunk
    # kernel's backward ignores a gradient on its separate final-state output)
    o, _ = kernel(x_in, g_in, initial_state=_state_in(s0), output_final_state=False)
    o = rearrange(o.to(real), "b t (d two) -> b t d two", two=2)
    h = torch.view_as_complex(o.contiguous()) * rotation
    return h, h[:, -1]


def dplr_fla(
    q: Tensor,
    log_w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    *,
    state: Tensor | None = None,
    scale: float = 1.0,
    min_log_decay: float | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """The diagonal-plus-rank-one delta rule of RWKV-7 (arXiv:2503.14456) on fla's
    ``chunk_rwkv7`` (its generalized delta rule), with the contract of
    :func:`mixerlab.ops.rwkv7.rwkv7_chunk`::

        S_t = diag(exp(log_w_t)) S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T,    o_t = S_t^T (scale q_t)

    which is fla's convention argument for argument (``w`` the log decay, state ``[B, H, K, V]``);
    RWKV-7 passes ``a = -kappa``, ``b = kappa * a_rwkv``. ``min_log_decay`` (a bound the caller
    guarantees on ``log_w``, ``-e^{-0.5}`` for RWKV-7) becomes fla's ``lower_bound``, which lets
    it use 64-step chunks on tensor cores, as fla's own RWKV-7 layer does. Shapes: ``q, log_w, k,
    a, b: [B, T, H, K]``, ``v: [B, T, H, V]``.
    """
    state_dtype = q.dtype if state is None else state.dtype
    q, k, a, b = (t.to(v.dtype) for t in (q, k, a, b))
    kernel = kernel or _kernel("chunk_rwkv7")
    o, S = kernel(
        q,
        log_w,
        k,
        v,
        a,
        b,
        scale=scale,
        initial_state=_state_in(state),
        output_final_state=True,
        lower_bound=min_log_decay,
    )
    return o.to(v.dtype), S.to(state_dtype)


def comba_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p: Tensor,
    beta: Tensor,
    g: Tensor,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Comba's scalar-plus-low-rank delta rule (arXiv:2506.02475) on fla's ``chunk_comba``, with
    the contract of :func:`mixerlab.ops.comba.comba_chunk`::

        S_t = exp(g_t) (I - beta_t k_t p_t^T) S_{t-1} + beta_t k_t v_t^T,    o_t = S_t^T (scale q_t)

    fla's kernels (``chunk_comba`` and ``fused_recurrent_comba`` alike) read ``p^T S_{t-1}``
    before the decay: ``S_t = exp(g_t) S_{t-1} - beta_t k_t p_t^T S_{t-1} + beta_t k_t v_t^T``, so
    ``exp(g_t) p_t`` is their ``p`` (their pure-PyTorch ``naive_recurrent_comba`` decays first, as
    mixerlab does; running the kernel in Triton's interpreter showed the difference, 8% of the
    output at ``T = 80``). Their arguments come as ``(q, k, v, p, g, beta)`` where mixerlab's are
    ``(..., p, beta, g)``.
    ``q`` is the layer's output-corrected query; fla's in-kernel L2 norm is off (the layer
    normalises). Shapes: ``q, k, p: [B, T, H, K]``, ``v: [B, T, H, V]``, ``beta, g: [B, T, H]``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state_dtype = q.dtype if state is None else state.dtype
    p = p * g.exp().to(p.dtype).unsqueeze(-1)
    q, k, p = (t.to(v.dtype) for t in (q, k, p))
    kernel = kernel or _kernel("chunk_comba")
    o, S = kernel(q, k, v, p, g, beta, scale=scale, initial_state=_state_in(state), output_final_state=True)
    return o.to(v.dtype), S.to(state_dtype)


def deltaproduct_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor | None = None,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """(Gated) DeltaProduct (arXiv:2502.10297) on fla's ``chunk_gated_delta_product``, with the
    contract of :func:`mixerlab.ops.deltaproduct.deltaproduct_chunk`: per token, the state is
    decayed once by ``exp(g_t)`` and then takes ``n_h`` delta-rule steps, read after the last.

    fla takes the ``n_h`` keys, values and learning rates of a token as consecutive steps of one
    sequence (``[B, T n_h, H, *]``, token ``t``'s step ``j`` at ``t n_h + j``), the gate and the
    query once per token: mixerlab's ``[B, T, n_h, H, *]`` flattened in that order. Shapes: ``q:
    [B, T, H, K]``, ``k: [B, T, n_h, H, K]``, ``v: [B, T, n_h, H, V]``, ``beta: [B, T, n_h, H]``,
    ``g: [B, T, H]`` or ``None``; state ``[B, H, K, V]``. fla's kernel refuses float32 inputs
    (``FLA_HALF_DTYPES``); its references stand in for it in float64 in the tests.
    """
    n_h = k.shape[2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state_dtype = q.dtype if state is None else state.dtype
    q, k = q.to(v.dtype), k.to(v.dtype)
    k, v = (rearrange(t, "b t n h d -> b (t n) h d") for t in (k, v))
    beta = rearrange(beta, "b t n h -> b (t n) h")
    kernel = kernel or _kernel("chunk_gated_delta_product")
    o, S = kernel(
        q,
        k,
        v,
        g,
        beta,
        num_householder=n_h,
        scale=scale,
        initial_state=_state_in(state),
        output_final_state=True,
    )
    return o.to(v.dtype), S.to(state_dtype)


def gsa_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    *,
    key_slots: Tensor | None = None,
    value_slots: Tensor | None = None,
    kernel: Callable[..., tuple[Tensor, Any]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gated slot attention (arXiv:2409.07146) on fla's ``chunk_gsa``, with the contract of
    :func:`mixerlab.ops.gsa.gsa_chunk`::

        K_t = diag(alpha_t) K_{t-1} + (1 - alpha_t)^T k_t,   V_t = diag(alpha_t) V_{t-1} + (1 - alpha_t)^T v_t
        o_t = V_t^T softmax(K_t q_t)

    fla writes the slots with ``s`` and decays them with the log gate ``g``: ``s = 1 - alpha_t``
    (as ``-expm1(log_alpha)``, exact near 1) and ``g = log_alpha``, given explicitly so fla's
    own ABC-style gate is off; ``scale=1`` (the layer scales ``q``). fla's key state is ``[K, M]``,
    the transpose of mixerlab's ``key_slots: [B, H, M, K]``; its value state is ``[M, V]`` as is.
    Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_alpha: [B, T, H, M]``; returns
    ``(o: [B, T, H, V], key_slots, value_slots)``.
    """
    B, _, H, K = q.shape
    M, V = log_alpha.shape[-1], v.shape[-1]
    dtype = q.dtype if key_slots is None else key_slots.dtype
    if key_slots is None:
        key_slots = q.new_zeros(B, H, M, K)
    if value_slots is None:
        value_slots = v.new_zeros(B, H, M, V)
    q, k = q.to(v.dtype), k.to(v.dtype)
    s = (-torch.expm1(log_alpha)).to(v.dtype)
    g = log_alpha if log_alpha.dtype == torch.float64 else log_alpha.float()
    kernel = kernel or _kernel("chunk_gsa")
    states = (_state_in(key_slots.transpose(-1, -2)), _state_in(value_slots))
    o, (hk, hv) = kernel(q, k, v, s, g, scale=1.0, initial_state=states, output_final_state=True)
    return o.to(v.dtype), hk.transpose(-1, -2).to(dtype), hv.to(dtype)


def log_linear_fla(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B_: Tensor,
    C_: Tensor,
    lam: Tensor,
    *,
    kernel: Callable[..., tuple[Tensor, Any]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Log-linear Mamba-2 (arXiv:2506.04761) from the first token on fla's
    ``chunk_log_linear_attn``, with the contract of :func:`mixerlab.ops.log_linear.log_linear_chunk`
    at ``position=0`` and no states::

        y_t = sum_{s <= t} lambda_t^(l(t, s)) exp(sum_{r=s+1..t} dt_r A) (C_t . B_s) dt_s x_s

    fla's level of ``(t, s)`` is the same Fenwick bucket (``bit_length(t xor s)``; its mask is
    written as ranges), with ``q = C``, ``k = B`` (one key group shared by the heads), ``v = dt
    x``, ``g = dt A``, ``level_scales = lambda`` and ``scale=1``. The states do not map: fla
    carries buckets of whole 64-token chunks plus the raw inputs of the unfinished chunk, mixerlab
    the per-token buckets of the last query (which a decoding step updates), and neither can be
    rebuilt from the other's sums. So a continued call (states given) stays on mixerlab's form,
    and the final buckets here are formed directly: bucket ``l`` of the last query ``e = T - 1``
    holds the contiguous block of tokens ``s`` with ``bit_length(e xor s) = l``, each weighted by
    its decay to ``e``. Shapes: ``x: [B, T, H, P]``, ``dt: [B, T, H]``, ``A: [H]``, ``B_, C_:
    [B, T, N]``, ``lam: [B, T, H, L]``; returns ``(y: [B, T, H, P], states: [B, L', H, P, N])``
    with ``L' = num_levels_after(T)``.
    """
    batch, T, H, P = x.shape
    u = dt[..., None] * x  # [B, T, H, P]
    log_decay = dt * A  # [B, T, H]
    kernel = kernel or _kernel("chunk_log_linear_attn")
    q, k = C_[:, :, None].to(u.dtype), B_[:, :, None].to(u.dtype)
    g = log_decay if log_decay.dtype == torch.float64 else log_decay.float()
    y, _ = kernel(q, k, u, g, lam.to(u.dtype), scale=1.0)
    # decay from token s to the last one: sum_{r=s+1..T-1} dt_r A, as a reversed cumulative sum
    to_end = log_decay.flip(1).cumsum(1).flip(1) - log_decay  # [B, T, H], <= 0
    weighted = u * to_end.exp()[..., None]
    end = T - 1
    buckets = [torch.einsum("bhp,bn->bhpn", weighted[:, end], B_[:, end])]  # level 0: s = e
    for level in range(1, max(end, 0).bit_length() + 1):
        half = 1 << (level - 1)
        if not end & half:  # bit l-1 of e clear: the bucket is empty
            buckets.append(buckets[0].new_zeros(batch, H, P, B_.shape[-1]))
            continue
        stop = end - end % half
        buckets.append(
            torch.einsum("bshp,bsn->bhpn", weighted[:, stop - half : stop], B_[:, stop - half : stop])
        )
    return y.to(x.dtype), torch.stack(buckets, dim=1).to(x.dtype)


def log_linear_fits(seq_len: int, head_dim: int, state_dim: int) -> bool:
    """Whether ``chunk_log_linear_attn`` takes these sizes: a power-of-two value width (``P``), a
    key width (``N``) in whole 64-wide blocks, and fewer than ``2^16`` tokens (its level cap)."""
    return head_dim & (head_dim - 1) == 0 and state_dim % 64 == 0 and seq_len < 2**16
