"""Self-referential weight matrix: the vectorised step loop against the literal reference."""

from __future__ import annotations

import math

import pytest
import torch

from mixerlab.bench.op_count import ops_per_step
from mixerlab.errors import ConfigError
from mixerlab.ops.srwm import srwm_recurrent, srwm_reference, srwm_step

B, T, H, K = 2, 11, 2, 4
R = 3 * K + 4


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, H, K, generator=g, dtype=torch.float64)
    W = torch.randn(B, H, R, K, generator=g, dtype=torch.float64) * 0.5
    return x, W


def test_recurrent_matches_reference_outputs_weights_and_gradients():
    x, W = (t.requires_grad_() for t in make_inputs())
    y_ref, W_ref = srwm_reference(x, W)
    y, W_new = srwm_recurrent(x, W)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(W_new, W_ref, rtol=1e-10, atol=1e-12)
    w_y = torch.randn_like(y)
    grads_ref = torch.autograd.grad((y_ref * w_y).sum() + W_ref.sum(), (x, W))
    grads = torch.autograd.grad((y * w_y).sum() + W_new.sum(), (x, W))
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_one_update_moves_the_key_readout_toward_the_query_readout():
    """Delta rule on itself: ``W' phi(k) - W phi(k) = lr (W phi(q) - W phi(k)) |phi(k)|^2`` row-wise."""
    x, W = make_inputs(seed=1)
    _, W_new = srwm_step(x[:, 0], W)
    out = torch.einsum("bhrk,bhk->bhr", W, torch.softmax(x[:, 0], -1))
    q, k, b = out[..., K : 2 * K], out[..., 2 * K : 3 * K], out[..., 3 * K :]
    phi_q, phi_k = torch.softmax(q, -1), torch.softmax(k, -1)
    lr = torch.sigmoid(b).repeat_interleave(torch.tensor([K, K, K, 4]), dim=-1)
    v = torch.einsum("bhrk,bhk->bhr", W, phi_q)
    v_bar = torch.einsum("bhrk,bhk->bhr", W, phi_k)
    moved = torch.einsum("bhrk,bhk->bhr", W_new, phi_k) - v_bar
    torch.testing.assert_close(moved, lr * (v - v_bar) * phi_k.square().sum(-1, keepdim=True))


def test_fused_loop_one_token_and_split_sequence_match_one_call():
    x, W = make_inputs(seed=2)
    y_ref, W_ref = srwm_reference(x, W)
    y1, W1 = srwm_recurrent(x[:, :1], W)  # T = 1
    y2, W2 = srwm_recurrent(x[:, 1:6], W1)
    ys = [y1, y2]
    for t in range(6, T):  # decoding, one token per call
        y_t, W2 = srwm_recurrent(x[:, t : t + 1], W2)
        ys.append(y_t)
    torch.testing.assert_close(torch.cat(ys, 1), y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(W2, W_ref, rtol=1e-10, atol=1e-12)
    y0, W0 = srwm_recurrent(x[:, :0], W2)
    assert y0.shape == (B, 0, H, K) and W0 is W2


def test_fused_loop_ops_per_step():
    """Structure, not time: a forward step is 8 ops (3 batched matmuls; the old loop dispatched
    14), a backward step 10 with the weights' recomputation (autograd's graph dispatched 27)."""
    x, W = make_inputs()

    def forward(T_: int):
        with torch.no_grad():
            srwm_recurrent(x[:, :T_], W)

    def forward_backward(T_: int):
        w = W.detach().requires_grad_()
        y, W_new = srwm_recurrent(x[:, :T_], w, checkpoint_every=16)  # one segment: per-step ops
        (y.sum() + W_new.sum()).backward()

    fwd = ops_per_step(forward, lengths=(4, 10))
    assert fwd.kernels <= 8 and fwd.by_name["bmm"] + fwd.by_name["baddbmm"] == 3, fwd
    both = ops_per_step(forward_backward, lengths=(4, 10))
    assert both.kernels <= 8 + 10 and both.views <= 4, both


@pytest.mark.parametrize(
    "every", [None, 1, 3, 4, 20]
)  # default ceil(sqrt(11)) = 4; 3, 4 do not divide T; 20 > T
def test_checkpointed_backward_matches_reference_for_every_segment_length(every):
    x, W = (t.requires_grad_() for t in make_inputs(seed=3))
    y_ref, W_ref = srwm_reference(x, W)
    y, W_new = srwm_recurrent(x, W, checkpoint_every=every)
    w_y = torch.randn_like(y)
    grads_ref = torch.autograd.grad((y_ref * w_y).sum() + (W_ref * W_ref).sum(), (x, W))
    grads = torch.autograd.grad((y * w_y).sum() + (W_new * W_new).sum(), (x, W))
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_checkpointed_backward_through_a_state_passed_across_a_split():
    """The weights returned by the first call start the second; the gradient crosses the split."""
    x, W = (t.requires_grad_() for t in make_inputs(seed=4))
    y_ref, W_ref = srwm_reference(x, W)
    y1, W1 = srwm_recurrent(x[:, :5], W, checkpoint_every=2)
    y2, W2 = srwm_recurrent(x[:, 5:], W1, checkpoint_every=4)
    w_y = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad((y_ref * w_y).sum() + W_ref.square().sum(), (x, W))
    grads = torch.autograd.grad((torch.cat([y1, y2], 1) * w_y).sum() + W2.square().sum(), (x, W))
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_bad_checkpoint_interval_names_the_field():
    x, W = make_inputs()
    with pytest.raises(ConfigError, match="checkpoint_every"):
        srwm_recurrent(x, W, checkpoint_every=0)


def test_saved_for_backward_holds_weights_only_every_sqrt_t_steps():
    """Bytes saved for the backward grow like T (vectors) + sqrt(T) weight matrices: far below one
    weight matrix per step, which the loop kept before."""
    B_, T_, H_, K_ = 1, 256, 1, 16
    x = torch.randn(B_, T_, H_, K_, requires_grad=True)
    W = torch.randn(B_, H_, 3 * K_ + 4, K_, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y, _ = srwm_recurrent(x, W)
    matrix = W[0].numel()  # one head's weights
    assert max(saved) <= math.ceil(T_**0.5) * matrix  # the checkpoints, the largest saved tensor
    assert sum(saved) < T_ * matrix / 3  # one matrix per step would be T_ * matrix
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
