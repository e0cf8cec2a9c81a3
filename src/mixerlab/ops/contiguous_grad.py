"""An identity whose backward hands a contiguous gradient on (shared by the chunked operators).

Chunked forms permute their inputs into ``[B, H, N, C, *]`` blocks, so the gradients of those
inputs come back with permuted strides. Under ``torch.compile`` (AOT autograd) the backward of
the projection that produced such an input then calls ``view`` on that gradient and fails; eager
mode is unaffected. Passing the input through :func:`contiguous_grad` first avoids this.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _ContiguousGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def contiguous_grad(x: Tensor) -> Tensor:
    """``x`` itself (a view) in the forward; its gradient is made contiguous in the backward."""
    return _ContiguousGrad.apply(x)
