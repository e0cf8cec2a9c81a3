"""flash-linear-attention (``fla``) as a backend of mixerlab's attention-like ops: the mapping.

The library of "Gated Linear Attention Transformers with Hardware-Efficient Training"
(arXiv:2312.06635) also ships Triton kernels for softmax-attention variants. Each function here
takes the arguments of mixerlab's op in mixerlab's conventions and returns what that op returns,
so a layer swaps one call for the other. What is mapped, and how:

==========================  ====================================  =================================
mixerlab op                 fla kernel                            conventions mapped
==========================  ====================================  =================================
forgetting attention        ``parallel_forgetting_attn``          ``g`` is ``log f`` per key
(``fox``, arXiv:2503.02130)                                       position ``[B, T, H]`` (log
                                                                  space, fla sums it itself: ``D_ij
                                                                  = c_i - c_j``), passed in
                                                                  float32; ``scale`` both
                                                                  ``K^-1/2``
stick-breaking attention    ``parallel_stickbreaking_attn``       ``attend_current=True``: mixerlab
(``stick_breaking``,                                              lets query ``i`` read key ``i``
arXiv:2410.17980)                                                 (``j <= i``, the stick over ``j <
                                                                  l <= i``); fla's remainder output
                                                                  is dropped
PaTH attention (``path``,   ``parallel_path_attn``                ``H_t = I - beta_t w_t w_t^T``
arXiv:2505.16381)                                                 in both; ``w, beta`` in float32
                                                                  (fla asserts it); no forget gate
                                                                  (``g=None``). fla's key cache
                                                                  carries no gradient, so the
                                                                  transformed keys of the state are
                                                                  mixerlab's (:func:`path_keys`)
DeltaFormer (``deltaformer``  ``ParallelDeltaformerFunction``     fla's ``u`` reads the memory with
arXiv:2505.19488)           (``fla.ops.deltaformer.parallel``)    its first argument (``q_t . k_i``
                                                                  in ``deltaformer_attn``);
                                                                  mixerlab's with the key
                                                                  (``k_t . k_i``), so it is given
                                                                  ``k`` twice. ``beta`` as computed
                                                                  by the layer; the read-out is
                                                                  mixerlab's ``attention_parallel``
                                                                  (fla's needs flash-attn)
==========================  ====================================  =================================

Not mapped, and why (their layers keep mixerlab's path; ``backend`` is not an option there):

- ``ttt_linear`` (``fla.ops.ttt``): fla's inner model has a bias, a residual ``z + LN(z)`` on the
  read-out ``z = W q`` (mixerlab, as the paper: ``q + LN(W q)``), a ``K^-1/2`` scale on ``q``, one
  step size per mini-batch (its last token's) where mixerlab steps each token with its own, and
  no partial mini-batch in the state (mixerlab's ``pos``).
- ``titans`` (``fla.ops.titans``): fla 0.6 has only PyTorch code for it (no Triton kernel), so
  there is nothing to gain.
- ``nsa`` (``fla.ops.nsa``): fla compresses a block by mean pooling and ranks blocks per GQA group
  of at least 16 query heads; mixerlab's NSA learns per-head compression weights and has one key
  head per query head, as in the paper's section 3.
- ``moba`` (``fla.ops.moba``): fla's op runs on flash-attn (not a Triton kernel of fla, and not in
  the ``fla`` extra) and ships no pure-PyTorch reference to check a mapping against.

Shared by all: ``[B, T, H, K]`` inputs in both libraries (not head-first); fla's kernels read
queries and keys at the same positions, so only a call that starts from an empty cache (training,
prefill) goes to fla; a call continuing from a cache (decoding, or any later chunk of a split
sequence) keeps mixerlab's form. Each kernel takes only some head sizes (:data:`HEAD_DIMS`): with
``backend="fla"`` another head size is an error naming ``head_dim`` at construction; with
``"auto"`` it quietly keeps mixerlab's form. Outputs come back in the dtype of ``v``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.errors import check
from mixerlab.ops.attention import attention_parallel
from mixerlab.ops.backends._loader import require
from mixerlab.ops.backends.fla import check_backend, use_fla
from mixerlab.ops.precision import widen

#: per op: (the fla function, whether a head size ``K`` (= ``V``) fits it, the sizes in words).
#: Triton tiles need powers of two for ``tl.arange`` (DeltaFormer, PaTH) and fit at most 256.
HEAD_DIMS: dict[str, tuple[str, Callable[[int], bool], str]] = {
    "fox": ("parallel_forgetting_attn", lambda K: K <= 256, "head_dim <= 256"),
    "stick_breaking": ("parallel_stickbreaking_attn", lambda K: K <= 256, "head_dim <= 256"),
    "path": ("parallel_path_attn", lambda K: K in (16, 32, 64, 128), "head_dim in (16, 32, 64, 128)"),
    "deltaformer": (
        "ParallelDeltaformerFunction",
        lambda K: K in (16, 32, 64, 128),
        "head_dim in (16, 32, 64, 128)",
    ),
}


#: DeltaFormer's kernel module: it imports ``fla.layers`` (flash-linear-attention, not fla-core)
DELTAFORMER_MODULE = "fla.ops.deltaformer.parallel"


def check_attention_backend(owner: str, op: str, backend: Any, head_dim: int) -> None:
    """Validate ``backend`` at construction, and that fla's kernel takes ``head_dim`` if demanded."""
    check_backend(owner, backend)
    kernel, fits, sizes = HEAD_DIMS[op]
    check(
        backend != "fla" or fits(head_dim),
        owner,
        "head_dim",
        head_dim,
        f"backend='fla' runs fla's {kernel}, which takes {sizes}; use backend='auto' or 'torch'",
    )


def use_fla_attention(owner: str, op: str, backend: str, x: Tensor, *, head_dim: int, cached: int) -> bool:
    """Whether this call goes to fla: :func:`~mixerlab.ops.backends.fla.use_fla`'s rule for the
    input, an empty cache (``cached`` earlier positions) and a head size the kernel takes."""
    needs = DELTAFORMER_MODULE if op == "deltaformer" else None
    return use_fla(owner, backend, x, module=needs) and cached == 0 and HEAD_DIMS[op][1](head_dim)


def _module(name: str) -> Any:
    """``fla.ops.<name>``, imported on first use (:func:`use_fla` checked that fla imports)."""
    return require(f"fla.ops.{name}")


def _wide(x: Tensor) -> Tensor:
    # fla takes gates (and PaTH's w, beta) in float32; float64 stays float64 only for fla's
    # pure-PyTorch references in the mapping tests.
    return x if x.dtype == torch.float64 else x.float()


def fox_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_forget: Tensor,
    *,
    scale: float | None = None,
    kernel: Callable[..., Tensor] | None = None,
) -> Tensor:
    """Forgetting attention (arXiv:2503.02130) on fla's ``parallel_forgetting_attn``, with the
    contract of :func:`mixerlab.ops.fox.fox_parallel` for ``Tq == Tk``::

        o_i = sum_{j<=i} softmax_j(q_i . k_j * scale + sum_{l=j+1..i} log f_l) v_j

    fla's ``g`` is the same ``log f`` per position (it takes the cumulative sum itself). Shapes:
    ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_forget: [B, T, H]``; returns ``[B, T, H, V]``.
    ``kernel`` replaces fla's function (same signature), e.g. by its reference in the tests.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    kernel = kernel or _module("forgetting_attn").parallel_forgetting_attn
    o = kernel(q, k.to(q.dtype), v.to(q.dtype), _wide(log_forget), scale=scale)
    return o.to(v.dtype)


def stick_breaking_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Stick-breaking attention (arXiv:2410.17980) on fla's ``parallel_stickbreaking_attn``, with
    the contract of :func:`mixerlab.ops.stick_breaking.stick_breaking_parallel` for ``Tq == Tk``::

        A_ij = sigmoid(z_ij) prod_{j<l<=i} (1 - sigmoid(z_il)),   z_ij = q_i . k_j * scale

    over keys ``j <= i``: fla's ``attend_current=True``. Shapes: ``q, k: [B, T, H, K]``,
    ``v: [B, T, H, V]``; returns ``[B, T, H, V]`` (fla's unused-stick output is dropped).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    kernel = kernel or _module("stickbreaking_attn").parallel_stickbreaking_attn
    o, _ = kernel(q, k.to(q.dtype), v.to(q.dtype), scale=scale, attend_current=True)
    return o.to(v.dtype)


def path_keys(k: Tensor, w: Tensor, beta: Tensor, *, chunk_size: int = 64) -> Tensor:
    """PaTH's decoding cache (arXiv:2505.16381): every key moved to the last position,
    ``H_T H_{T-1} ... H_{i+1} k_i`` with ``H_t = I - beta_t w_t w_t^T``.

    Per chunk of ``C`` steps, the UT transform (the same compact form as
    :mod:`mixerlab.ops.path.chunk`) gives the chunk's keys moved to its end and the chunk's whole
    product ``P = H_e ... H_s``; a loop over chunks from the last carries ``P_N ... P_{n+1}`` back
    to chunk ``n``. Cost ``O(T C K + T K^2)``, small beside attention's ``O(T^2 K)``; unlike
    fla's cache (whose backward drops its gradient), it is differentiable. Shapes: ``k, w:
    [B, T, H, K]``, ``beta: [B, T, H]``; returns ``[B, T, H, K]``.
    """
    T, C, K = k.shape[1], chunk_size, k.shape[-1]
    pad = (-T) % C
    if pad:  # a padded step has beta = 0 (H = I) and a zero key, dropped at the end
        k, w = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (k, w))
        beta = F.pad(beta, (0, 0, 0, pad))
    dtype = k.dtype
    k, w, beta = widen(k, w, beta.to(k.dtype))
    k, w = (rearrange(t, "b (n c) h d -> b h n c d", c=C) for t in (k, w))
    wb = w * rearrange(beta, "b (n c) h -> b h n c", c=C)[..., None]
    idx = torch.arange(C, device=k.device)
    strict = idx[:, None] > idx[None, :]
    system = torch.eye(C, dtype=k.dtype, device=k.device) + (wb @ w.transpose(-1, -2)) * strict
    rhs = torch.cat([(wb @ k.transpose(-1, -2)) * strict, wb], dim=-1)
    corr, twb = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True).split(
        [C, K], dim=-1
    )
    k_end = k - corr.transpose(-1, -2) @ w  # [B, H, N, C, K]: each key moved to its chunk's end
    products = torch.eye(K, dtype=k.dtype, device=k.device) - w.transpose(-1, -2) @ twb  # [B, H, N, K, K]
    later = torch.eye(K, dtype=k.dtype, device=k.device).expand_as(products[:, :, 0])
    moved = []
    for n in reversed(range(k.shape[2])):
        moved.append(k_end[:, :, n] @ later.transpose(-1, -2))  # rows: later @ k
        later = later @ products[:, :, n]
    keys = rearrange(torch.stack(moved[::-1], dim=2), "b h n c d -> b (n c) h d")
    return keys[:, :T].to(dtype)


def path_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    beta: Tensor,
    *,
    scale: float | None = None,
    kernel: Callable[..., tuple[Tensor, Tensor | None]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """PaTH attention (arXiv:2505.16381) on fla's ``parallel_path_attn``, with the contract of
    :func:`mixerlab.ops.path.path_chunk` for an empty cache::

        o_t = sum_{i<=t} softmax_i(q_t^T H_t ... H_{i+1} k_i * scale) v_i,   H_t = I - beta_t w_t w_t^T

    Shapes: ``q, k, w: [B, T, H, K]`` (``w`` unit-norm), ``v: [B, T, H, V]``, ``beta: [B, T, H]``.
    Returns ``(o: [B, T, H, V], transformed keys: [B, T, H, K], values: [B, T, H, V])``; the keys
    are :func:`path_keys`.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    kernel = kernel or _module("path_attn").parallel_path_attn
    o, _ = kernel(
        q, k.to(q.dtype), v.to(q.dtype), _wide(w), _wide(beta), g=None, scale=scale, use_cache=False
    )
    return o.to(v.dtype), path_keys(k, w, beta), v


def _deltaformer_kernel(k_read: Tensor, k: Tensor, v: Tensor, beta: Tensor) -> Tensor:
    parallel = require(DELTAFORMER_MODULE)
    return parallel.ParallelDeltaformerFunction.apply(k_read, k, v, beta, parallel.BLOCK_SIZE_C, None)


def deltaformer_fla(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    *,
    kernel: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """DeltaFormer (arXiv:2505.19488) with its corrected values on fla's kernel, with the contract
    of :func:`mixerlab.ops.deltaformer.deltaformer_parallel` for an empty cache::

        u_t = v_t - beta_t sum_{i<t} softmax_i(k_t . k_i / sqrt(K)) u_i
        o_t = sum_{i<=t} softmax_i(q_t . k_i / sqrt(K)) u_i

    ``kernel(a, k, v, beta) -> u`` is fla's ``ParallelDeltaformerFunction``, which scores ``a_t .
    k_i`` with ``a`` its first argument: ``k`` here. Its scale is fixed at ``K^-1/2``, as the
    layer's. The read-out is :func:`mixerlab.ops.attention.attention_parallel` (SDPA). Shapes:
    ``q, k, v: [B, T, H, K]``, ``beta: [B, T, H]``; returns ``(o, keys, corrected values)``.
    """
    kernel = kernel or _deltaformer_kernel
    k, v = k.to(q.dtype).contiguous(), v.to(q.dtype).contiguous()
    u = kernel(k, k, v, beta.to(q.dtype).contiguous()).to(v.dtype)
    return attention_parallel(q, k, u), k, u
