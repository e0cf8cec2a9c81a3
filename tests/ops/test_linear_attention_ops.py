"""Gated linear attention op: chunk form and recurrent steps against the per-step reference,
closed-form parallel forms, and numerical safety under strong decays."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.linear_attention import (
    linear_attention_chunk,
    linear_attention_recurrent,
    linear_attention_reference,
)

B, T, H, K, V = 2, 33, 3, 5, 4
DECAYS = ["none", "scalar", "vector"]


def make_inputs(decay: str, seq_len: int = T, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, seq_len, H, K, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, seq_len, H, V, generator=g, dtype=dtype)
    if decay == "none":
        log_decay = None
    elif decay == "scalar":
        log_decay = F.logsigmoid(torch.randn(B, seq_len, H, generator=g, dtype=dtype) + 2)
    else:
        log_decay = F.logsigmoid(torch.randn(B, seq_len, H, K, generator=g, dtype=dtype))
    S0 = torch.randn(B, H, K, V, generator=g, dtype=dtype)
    return q, k, v, log_decay, S0


def close(a, b, what, rtol=1e-7, atol=1e-9):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize(
    ("decay", "max_exponent"), [("none", None), ("scalar", None), ("vector", None), ("vector", 0.0)]
)
@pytest.mark.parametrize(("chunk", "sub"), [(8, 16), (16, 4), (12, 4), (12, 3), (64, 16), (1, 1)])
def test_chunk_matches_reference_outputs_gradients_state(decay, max_exponent, chunk, sub):
    q, k, v, log_decay, S0 = make_inputs(decay)
    leaves = [t for t in (q, k, v, log_decay, S0) if t is not None]
    for t in leaves:
        t.requires_grad_()
    o_ref, S_ref = linear_attention_reference(q, k, v, log_decay, initial_state=S0)
    o, S = linear_attention_chunk(
        q, k, v, log_decay, initial_state=S0, chunk_size=chunk, subchunk_size=sub, max_exponent=max_exponent
    )
    close(o, o_ref, "output")
    close(S, S_ref, "final state")
    g_o, g_S = torch.randn_like(o), torch.randn_like(S)
    grads_ref = torch.autograd.grad((o_ref * g_o).sum() + (S_ref * g_S).sum(), leaves)
    grads = torch.autograd.grad((o * g_o).sum() + (S * g_S).sum(), leaves)
    for i, (a, b) in enumerate(zip(grads, grads_ref)):
        close(a, b, f"gradient of input {i}")


def test_subchunk_must_divide_chunk():
    q, k, v, log_decay, _ = make_inputs("vector")
    with pytest.raises(ValueError, match="subchunk_size"):
        linear_attention_chunk(q, k, v, log_decay, chunk_size=12, subchunk_size=5)


@pytest.mark.parametrize("decay", DECAYS)
def test_recurrent_steps_match_reference(decay):
    q, k, v, log_decay, S0 = make_inputs(decay)
    o_ref, S_ref = linear_attention_reference(q, k, v, log_decay, initial_state=S0)
    S, outs = S0, []
    for t in range(T):
        o_t, S = linear_attention_recurrent(
            q[:, t], k[:, t], v[:, t], None if log_decay is None else log_decay[:, t], S
        )
        outs.append(o_t)
    close(torch.stack(outs, 1), o_ref, "recurrent outputs")
    close(S, S_ref, "recurrent state")


@pytest.mark.parametrize("decay", DECAYS)
def test_chunk_continues_from_its_own_state(decay):
    q, k, v, log_decay, _ = make_inputs(decay)
    o_full, S_full = linear_attention_chunk(q, k, v, log_decay, chunk_size=8)
    cut = 13
    first = [t[:, :cut] if t is not None else None for t in (q, k, v, log_decay)]
    rest = [t[:, cut:] if t is not None else None for t in (q, k, v, log_decay)]
    o1, S1 = linear_attention_chunk(*first, chunk_size=8)
    o2, S2 = linear_attention_chunk(*rest, initial_state=S1, chunk_size=8)
    close(torch.cat([o1, o2], 1), o_full, "split outputs")
    close(S2, S_full, "split state")


def test_no_decay_equals_causal_masked_product():
    # "Transformers are RNNs" eq. 4 without normaliser: o_t = sum_{s<=t} (q_t . k_s) v_s.
    q, k, v, _, _ = make_inputs("none")
    scores = torch.einsum("bthk,bshk->bhts", q, k).tril()
    expected = torch.einsum("bhts,bshv->bthv", scores, v)
    o, S = linear_attention_chunk(q, k, v, chunk_size=8)
    close(o, expected, "parallel form")
    close(S, torch.einsum("bshk,bshv->bhkv", k, v), "state = sum k^T v")


def test_scalar_decay_equals_retention_parallel_form():
    # RetNet eq. 5: o = (q k^T * D) v with D_ts = gamma^(t - s) for s <= t.
    q, k, v, _, _ = make_inputs("none")
    gamma = torch.tensor([0.9, 0.5, 0.99], dtype=torch.float64)
    log_decay = gamma.log().expand(B, T, H)
    n = torch.arange(T, dtype=torch.float64)
    D = torch.where(n[:, None] >= n[None, :], gamma[:, None, None] ** (n[:, None] - n[None, :]), 0.0)
    expected = torch.einsum("bthk,bshk,hts,bshv->bthv", q, k, D, v)
    o, _ = linear_attention_chunk(q, k, v, log_decay, chunk_size=8)
    close(o, expected, "retention parallel form")


@pytest.mark.parametrize("decay", ["scalar", "vector"])
def test_strong_decays_stay_finite_in_float32(decay):
    # log decays of -60 per step: exp(-g) over a chunk would overflow float32 (e^(60 * 64)).
    q, k, v, log_decay, S0 = make_inputs(decay, dtype=torch.float32)
    log_decay = log_decay * 0 - 60.0
    log_decay[:, ::3] = -1e-3  # mix strong and weak steps
    for t in (q, k, v, log_decay):
        t.requires_grad_()
    o, S = linear_attention_chunk(q, k, v, log_decay, initial_state=S0, chunk_size=32, subchunk_size=8)
    o_ref, _ = linear_attention_reference(
        *(t.double() for t in (q, k, v, log_decay)), initial_state=S0.double()
    )
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    # float32 cumulative sums of large log decays cost a few digits, nothing more.
    close(o.double(), o_ref, "strong-decay output", rtol=1e-3, atol=1e-4)
    grads = torch.autograd.grad(o.square().sum(), (q, k, v, log_decay))
    assert all(torch.isfinite(g).all() for g in grads)


def test_compiled_chunk_is_one_graph_and_picks_the_scores_from_the_data():
    # torch.cond chooses between the one-matmul and the sub-chunked scores at run time, so one
    # compiled graph (no break, no recompilation) must serve both mild and nearly closing gates.
    # A log decay of -400 on five steps of a chunk of 8 spans -2000: the one-matmul form would need
    # exp(1000), which overflows float64, so a wrong choice shows as inf/NaN, not as a small error.
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")

    def run(q, k, v, log_decay, S0):
        return linear_attention_chunk(q, k, v, log_decay, initial_state=S0, chunk_size=8, subchunk_size=4)

    compiled = torch.compile(run, backend=counter, fullgraph=True)
    q, k, v, log_decay, S0 = make_inputs("vector")
    strong = log_decay * 0 - 400.0
    strong[:, ::3] = -1e-3  # mix nearly closed and open steps
    for label, decay in (("mild", log_decay), ("strong", strong)):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, decay, S0)]
        o_ref, S_ref = linear_attention_reference(*leaves[:4], initial_state=leaves[4])
        o, S = compiled(*leaves)
        close(o, o_ref, f"{label} compiled output")
        close(S, S_ref, f"{label} compiled state")
        g_o = torch.randn_like(o)
        grads_ref = torch.autograd.grad((o_ref * g_o).sum() + S_ref.sum(), leaves)
        grads = torch.autograd.grad((o * g_o).sum() + S.sum(), leaves)
        for i, (a, b) in enumerate(zip(grads, grads_ref)):
            close(a, b, f"{label} compiled gradient of input {i}")
    assert counter.frame_count == 1, f"expected one compiled graph, got {counter.frame_count}"
