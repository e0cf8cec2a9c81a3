"""ops/path: the chunked PaTH attention against its per-query decoding-form reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.attention import attention_reference
from mixerlab.ops.path import path_chunk, path_reference

B, T, H, K, V = 2, 13, 2, 4, 3


def inputs(cached: int):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = rand(B, T, H, K), rand(B, T, H, K), rand(B, T, H, V)
    w, beta = F.normalize(rand(B, T, H, K), dim=-1), 2.0 * torch.sigmoid(rand(B, T, H))
    return q, k, v, w, beta, rand(B, cached, H, K), rand(B, cached, H, V)


@pytest.mark.parametrize("cached", [0, 5])
@pytest.mark.parametrize("chunk_size", [1, 4, 16])
def test_chunk_matches_reference_outputs_and_gradients(cached, chunk_size):
    leaves = tuple(t.requires_grad_() for t in inputs(cached))
    want = path_reference(*leaves)
    got = path_chunk(*leaves, chunk_size=chunk_size)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    gy = torch.randn_like(want[0])
    wanted = [t for t in leaves if t.numel()]
    grads_ref = torch.autograd.grad((want[0] * gy).sum() + want[1].sum(), wanted)
    grads = torch.autograd.grad((got[0] * gy).sum() + got[1].sum(), wanted)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_identity_transforms_give_plain_causal_attention():
    q, k, v, w, beta, k_cache, v_cache = inputs(0)
    o, keys, _ = path_chunk(q, k, v, w, torch.zeros_like(beta), k_cache, v_cache, chunk_size=4)
    torch.testing.assert_close(o, attention_reference(q, k, v))
    torch.testing.assert_close(keys, k)


def test_score_is_the_product_of_householders_between_the_positions():
    q, k, v, w, beta, k_cache, v_cache = inputs(0)
    _, keys, _ = path_chunk(q, k, v, w, beta, k_cache, v_cache, chunk_size=4)
    # the cached key of position 2, as seen from the last position: H_{T-1} ... H_3 k_2
    x = k[:, 2]
    for s in range(3, T):
        x = x - beta[:, s, :, None] * (x * w[:, s]).sum(-1, keepdim=True) * w[:, s]
    torch.testing.assert_close(keys[:, 2], x)
