"""mamba-ssm and causal-conv1d as a backend of ``mamba`` and ``mamba2``: the mapping of conventions.

The authors' CUDA and Triton kernels of "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces" (arXiv:2312.00752) and "Transformers are SSMs" (Mamba-2, arXiv:2405.21060) take the
arguments below; each function here takes mixerlab's op arguments in mixerlab's conventions and
returns what mixerlab's op returns, so a layer swaps one call for the other:

===========================  ============================  =======================================
mixerlab op                  kernel                        conventions mapped
===========================  ============================  =======================================
selective scan (``mamba``)   ``selective_scan_fn``         channels first: ``x, dt, z: [B, E, T]``,
                                                           ``B, C: [B, N, T]``; ``A: [E, N]`` and
                                                           ``D: [E]`` in float32; ``D x`` and the
                                                           ``SiLU(z)`` gate fused; no initial state
SSD (``mamba2``)             ``mamba_chunk_scan_combined`` ``x: [B, T, H, P]`` and the state
                                                           ``[B, H, P, N]`` as is; one group:
                                                           ``B, C: [B, T, 1, N]``; ``dt`` already
                                                           soft-plussed, so no ``dt_bias``
short causal conv (both)     ``causal_conv1d_fn``          ``[B, C, T]`` as a channel-last view of
                             (package causal-conv1d)       ``[B, T, C]``; weight ``[C, W]`` in the
                                                           same tap order (``weight[:, -1]`` on the
                                                           current token); state ``[B, C, W-1]``
===========================  ============================  =======================================

Both mixerlab and the kernels compute ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t``, ``y_t = C_t
h_t`` (the simplified zero-order hold), so no parameter is rescaled. What a kernel cannot take goes
to mixerlab's path, never to a wrong result:

- ``selective_scan_fn`` starts from a zero state: ``mamba`` uses it only for calls without a state
  (a call continuing from a state takes mixerlab's path). It also returns the final state without
  differentiating it: the state is returned as is, but a gradient that reaches it is an error
  (train through carried states with ``backend="torch"``), not a silently dropped term.
- ``causal_conv1d_fn`` takes 2 to 4 taps and a channel count divisible by 8; other convolutions,
  and calls shorter than the filter, run on mixerlab's :mod:`~mixerlab.ops.conv1d`. Without the
  causal-conv1d package the scans still run on mamba-ssm's kernels.
- No kernel takes negative eigenvalues (``mamba``'s ``allow_negative_eigenvalues``), float64, a CPU
  input or a state wider than 256 (``selective_scan_fn``).

``backend="auto"`` on a CUDA input in a dtype the kernels take picks mamba-ssm when it imports,
else flash-linear-attention (:mod:`.fla`), else mixerlab's forms; on a CPU and in float64 it is
always mixerlab's forms. The kernels' final states come back in the dtype of the state that came in
(or of ``x``), as mixerlab's forms return them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.backends import fla
from mixerlab.ops.backends._loader import KernelLibrary, load, require

__all__ = [
    "BACKENDS",
    "CHUNK_SIZE",
    "causal_conv1d_mamba_ssm",
    "check_backend",
    "mamba_ssm_available",
    "selective_scan_mamba_ssm",
    "short_conv_mamba_ssm",
    "ssd_mamba_ssm",
    "use_mamba_ssm",
]

#: the ``backend`` values of ``mamba`` and ``mamba2``: fla's and ``"mamba_ssm"``.
BACKENDS = (*fla.BACKENDS, "mamba_ssm")
#: dtypes the kernels take (their CUDA templates and Triton's ``tl.dot`` have no float64).
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: ``selective_scan_fn`` refuses wider states.
MAX_STATE_DIM = 256
#: tap counts ``causal_conv1d_fn`` compiles.
CONV_WIDTHS = (2, 3, 4)
#: ``mamba_chunk_scan_combined``'s chunk length: the authors' ``Mamba2`` default. Like fla's, it is
#: the kernel's own; mixerlab's ``chunk_size`` shapes mixerlab's form only.
CHUNK_SIZE = 256
LIBRARY = KernelLibrary(
    choice="mamba_ssm",
    package="mamba_ssm",
    label="mamba-ssm",
    install=(
        "mamba-ssm is not installed (see the 'mamba' extra; its CUDA kernels build from source with "
        "nvcc, and causal-conv1d adds the short-convolution kernel)"
    ),
    kernels="mamba-ssm's kernels",
    fallback="use 'auto' to fall back",
    auto_fallback="not using it",
)
#: where each kernel lives.
_KERNELS = {
    "selective_scan_fn": "mamba_ssm.ops.selective_scan_interface",
    "mamba_chunk_scan_combined": "mamba_ssm.ops.triton.ssd_combined",
    "causal_conv1d_fn": "causal_conv1d",
}


def mamba_ssm_available() -> bool:
    """Whether the ``mamba_ssm`` package is installed; cheap (finds it, does not import it)."""
    return LIBRARY.available()


def check_backend(owner: str, backend: Any) -> None:
    """Validate the ``backend`` option of ``mamba`` / ``mamba2`` at construction time."""
    LIBRARY.check(owner, backend, BACKENDS)
    fla.LIBRARY.check(owner, backend, BACKENDS)


def use_mamba_ssm(owner: str, backend: str, x: Tensor, kernel: str = "selective_scan_fn") -> bool:
    """Whether this call of ``owner``'s fast mode runs on mamba-ssm's ``kernel``, for the input ``x``.

    ``"mamba_ssm"`` with an input the kernels cannot take (not on CUDA, or float64), or with a
    package that does not import, is an error naming the field; ``"auto"`` quietly takes the next
    backend for such inputs.
    """
    return LIBRARY.use(owner, backend, x, KERNEL_DTYPES, lambda: _load(kernel))


def _load(name: str) -> tuple[Callable[..., Any] | None, ImportError | None]:
    """The kernel ``name`` (its module imported once), or the import error."""
    return load(_KERNELS[name], name)


def _kernel(name: str) -> Callable[..., Any]:
    return require(_KERNELS[name], name)


class _StateWithoutGradient(torch.autograd.Function):
    """Identity on a final state that the kernel does not differentiate: a gradient reaching it
    raises instead of being dropped. ``anchor`` (an input of the scan) ties it to the graph."""

    @staticmethod
    def forward(ctx: Any, state: Tensor, anchor: Tensor) -> Tensor:
        return state.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None]:
        raise RuntimeError(
            "mamba: backend 'mamba_ssm' returned this final state from selective_scan_fn, which does "
            "not backpropagate through it; to train through states carried across calls use "
            "backend='torch' (or 'fla')"
        )


def selective_scan_mamba_ssm(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba's selective scan (arXiv:2312.00752) from a zero state on ``selective_scan_fn``::

        h_t[e, n] = exp(dt_t[e] A[e, n]) h_{t-1}[e, n] + dt_t[e] x_t[e] B_t[n],    h_0 = 0
        y_t[e] = (C_t . h_t[e] + D[e] x_t[e]) * SiLU(z_t[e])     (D and z optional)

    Shapes: ``x, dt, z: [B, T, E]``, ``A: [E, N]``, ``B, C: [B, T, N]``, ``D: [E]``; returns
    ``(y: [B, T, E], h_T: [B, E, N])``. ``dt`` is the step size itself (the kernel's
    ``delta_softplus`` is off). The kernel reads channels first and wants ``A`` and ``D`` in float32
    and the rest in ``x``'s dtype. ``kernel`` replaces ``selective_scan_fn`` (same signature), e.g.
    by mamba-ssm's pure-PyTorch ``selective_scan_ref`` in the mapping tests.
    """
    kernel = kernel or _kernel("selective_scan_fn")
    dtype = x.dtype

    def channels_first(t: Tensor) -> Tensor:  # [B, T, C] -> [B, C, T]
        return rearrange(t.to(dtype), "b t c -> b c t")

    y, h = kernel(
        channels_first(x),
        channels_first(dt),
        A.float(),  # float32 always: the kernel's (and its reference's) weight type
        channels_first(B),
        channels_first(C),
        D=None if D is None else D.float(),
        z=None if z is None else channels_first(z),
        delta_softplus=False,
        return_last_state=True,
    )
    h = h.to(dtype)
    anchors = [t for t in (x, dt, A, B, C, D, z) if t is not None and t.requires_grad]
    if torch.is_grad_enabled() and anchors:
        h = _StateWithoutGradient.apply(h.detach(), anchors[0])
    return rearrange(y, "b e t -> b t e").to(dtype), h


def ssd_mamba_ssm(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B_: Tensor,
    C_: Tensor,
    *,
    state: Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba-2's SSD (arXiv:2405.21060) on ``mamba_chunk_scan_combined``, with the contract of
    :func:`mixerlab.ops.ssd.ssd_chunk`::

        h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,    y_t = h_t C_t       (h: [P, N] per head)

    Shapes: ``x: [B, T, H, P]``, ``dt: [B, T, H]``, ``A: [H]``, ``B_, C_: [B, T, N]`` (one group,
    shared by the heads: the kernel's ``ngroups = 1``), ``state: [B, H, P, N]`` (the kernel's
    ``initial_states`` layout as is); returns ``(y: [B, T, H, P], h_T: [B, H, P, N])``. The kernel
    computes its states in float32 and returns the final one in ``C``'s dtype; it is cast to the
    dtype of the state that came in (or of ``x``). ``kernel`` replaces the kernel (same signature).
    """
    kernel = kernel or _kernel("mamba_chunk_scan_combined")
    state_dtype = x.dtype if state is None else state.dtype
    y, h = kernel(
        x,
        dt.to(x.dtype),
        _float32(A),
        rearrange(B_.to(x.dtype), "b t n -> b t 1 n"),
        rearrange(C_.to(x.dtype), "b t n -> b t 1 n"),
        chunk_size,
        initial_states=None if state is None else _float32(state),
        return_final_states=True,
    )
    return y.to(x.dtype), h.to(state_dtype)


def _float32(t: Tensor) -> Tensor:
    # what the kernels take in float32 (A, D, states); float64 stays float64 only for the
    # pure-PyTorch references in the CPU mapping tests (use_mamba_ssm refuses float64 inputs)
    return t if t.dtype == torch.float64 else t.float()


def conv_fits(x: Tensor, weight: Tensor) -> bool:
    """Whether ``causal_conv1d_fn`` takes this convolution: 2 to 4 taps, channels divisible by 8,
    an input at least as long as the filter (shorter calls, decoding steps included, take
    mixerlab's cheap forms), on CUDA with the causal-conv1d package importable."""
    C, W = weight.shape
    return W in CONV_WIDTHS and C % 8 == 0 and x.shape[1] >= W and _conv_kernel_runs_on(x)


def _conv_kernel_runs_on(x: Tensor) -> bool:
    if not x.is_cuda or importlib.util.find_spec("causal_conv1d") is None:
        return False
    return _load("causal_conv1d_fn")[1] is None


def causal_conv1d_mamba_ssm(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    state: Tensor | None,
    *,
    activation: str | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`mixerlab.ops.conv1d.causal_conv1d` (then ``activation``) on causal-conv1d's kernel::

        y_t = act(bias + sum_{k<W} weight[:, W-1-k] * x_{t-k})      (x_{t<0}: the carried state)

    which is the kernel's convention too (``nn.Conv1d``'s, with ``W - 1`` steps of left context).
    ``x: [B, T, C]``, ``weight: [C, W]``, ``bias: [C]``, ``state: [B, W-1, C]`` (zeros when None);
    returns ``(y: [B, T, C], the last W-1 inputs: [B, W-1, C])``. The kernel reads ``[B, C, T]``;
    the transposed view of a ``[B, T, C]`` tensor is its channel-last layout, the only one that
    takes and returns states, and wants strides divisible by 8 (a copy is made otherwise).
    """
    kernel = kernel or _kernel("causal_conv1d_fn")
    if x.stride(-1) != 1 or x.stride(1) % 8 or x.stride(0) % 8:
        x = x.contiguous()
    if state is not None:
        # [B, W-1, C] contiguous: its transposed view has stride(1) == 1, as the kernel requires
        state = state.to(x.dtype).contiguous()
    y, tail = kernel(
        rearrange(x, "b t c -> b c t"),
        weight,
        bias,
        initial_states=None if state is None else rearrange(state, "b w c -> b c w"),
        return_final_states=True,
        activation=activation,
    )
    return rearrange(y, "b c t -> b t c"), rearrange(tail, "b c w -> b w c")


def short_conv_mamba_ssm(conv: Any, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
    """A :class:`~mixerlab.layers.short_conv.ShortConv` (``conv``) on causal-conv1d's kernel where
    it fits (:func:`conv_fits`), else the module's own fast form; same ``(y, state)`` either way."""
    if not conv_fits(x, conv.weight):
        return conv(x, state)
    return causal_conv1d_mamba_ssm(x, conv.weight, conv.bias, state, activation=conv.activation)
