"""The peers of ``mixerlab speed``: each builds and trains at a toy size on a CPU, its like-for-like
settings are options our mixer takes, and the peer's op computes our op (checked against our
per-step references, with weights copied where the peer is a whole layer of ours).

Most of fla's references compute in float32 whatever comes in (they call ``.float()``), so those
comparisons feed float64 inputs and hold to float32 rounding (``_F32``); fla's stick-breaking
reference keeps float64 and is held to float64 rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from mixerlab import create_token_mixer
from mixerlab.bench.peers import PEERS, Peer, _fla_file
from mixerlab.ops.comba.reference import comba_reference
from mixerlab.ops.deltaproduct.reference import deltaproduct_reference
from mixerlab.ops.gsa.reference import gsa_reference
from mixerlab.ops.kda.reference import kda_reference
from mixerlab.ops.mesa.reference import mesa_reference
from mixerlab.ops.path.reference import path_reference
from mixerlab.ops.rwkv6.reference import rwkv6_reference
from mixerlab.ops.rwkv7.reference import rwkv7_reference

DIM, HEADS, BATCH = 32, 2, 2
SEQ_LEN = 37  # odd, and not a multiple of any peer's chunk: the padding path runs
_F32 = {"rtol": 1e-5, "atol": 1e-5}
_F64 = {"rtol": 1e-10, "atol": 1e-10}

CASES = [
    pytest.param(name, peer, id=f"{name}-{peer.name}") for name, peers in PEERS.items() for peer in peers
]


def _build(peer: Peer) -> torch.nn.Module:
    try:
        return peer.build(DIM, HEADS)
    except ImportError as exc:
        pytest.skip(f"peer not installed: {exc}")


def _fla_op(sub: str, fn: str, filename: str = "naive"):
    try:
        return getattr(_fla_file(sub, filename), fn)
    except ImportError as exc:
        pytest.skip(f"peer not installed: {exc}")


@pytest.mark.parametrize(("name", "peer"), CASES)
def test_peer_trains_causally_at_toy_size(name: str, peer: Peer) -> None:
    torch.manual_seed(0)
    module = _build(peer)
    x = torch.randn(BATCH, SEQ_LEN, DIM, requires_grad=True)
    y = peer.call(module, x)
    assert y.shape == (BATCH, SEQ_LEN, DIM)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for param_name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # a changed future leaves the past alone (a chunk padded at the front, or a peer that is not
    # causal, would not)
    later = x.detach().clone()
    later[:, 20:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(peer.call(module, later)[:, :20], y.detach()[:, :20])


@pytest.mark.parametrize(("name", "peer"), CASES)
def test_peer_kind_and_same_settings_are_valid(name: str, peer: Peer) -> None:
    assert peer.kind in ("loop", "chunked", "parallel", "fused")
    if not peer.same_settings:
        return
    mixer = create_token_mixer(name, dim=DIM, num_heads=HEADS, **peer.same_settings)
    y, _ = mixer(torch.randn(BATCH, SEQ_LEN, DIM))
    assert y.shape == (BATCH, SEQ_LEN, DIM)


def _copy_attention_weights(ours: torch.nn.Module, peer: torch.nn.Module) -> None:
    """Our ``q_proj`` / ``kv_proj`` / ``o_proj`` into the peer's fused ``qkv`` and ``o``."""
    with torch.no_grad():
        peer.qkv.weight.copy_(torch.cat([ours.q_proj.weight, ours.kv_proj.weight]))
        peer.o.weight.copy_(ours.o_proj.weight)


def test_stick_breaking_peer_is_our_layer_with_its_weights() -> None:
    torch.manual_seed(0)
    ours = create_token_mixer("stick_breaking", dim=DIM, num_heads=HEADS).double()
    peer = _build(PEERS["stick_breaking"][0]).double()
    _copy_attention_weights(ours, peer)
    x = torch.randn(BATCH, SEQ_LEN, DIM, dtype=torch.float64)
    torch.testing.assert_close(peer(x), ours(x)[0], **_F64)


def test_fox_peer_is_our_layer_with_its_weights() -> None:
    torch.manual_seed(0)
    ours = create_token_mixer("fox", dim=DIM, num_heads=HEADS).double()
    peer = _build(PEERS["fox"][0]).double()
    _copy_attention_weights(ours, peer)
    with torch.no_grad():
        peer.inputs.g_proj.weight.copy_(ours.forget_proj.weight)
        peer.inputs.g_proj.bias.copy_(ours.forget_proj.bias)
        # a strong forget gate, so that a gate read at the wrong position would show
        peer.inputs.g_proj.bias.fill_(-1.0)
        ours.forget_proj.bias.fill_(-1.0)
    x = torch.randn(BATCH, SEQ_LEN, DIM, dtype=torch.float64)
    torch.testing.assert_close(peer(x), ours(x)[0], **_F32)


def test_kimi_peer_is_our_kda_layer_with_its_weights() -> None:
    """transformers' Kimi Linear layer is ``kda`` at its defaults: short SiLU convolution over
    q/k/v, low-rank per-channel decay, chunked KDA, gated RMSNorm. It computes in float32 and
    L2-normalises with an ``eps`` inside the root, hence float32 tolerances (our projections'
    scale keeps that ``eps`` negligible)."""
    torch.manual_seed(0)
    ours = create_token_mixer("kda", dim=DIM, num_heads=HEADS).double()
    peer = _build(PEERS["kda"][1]).double()
    with torch.no_grad():
        for theirs, mine in zip((peer.q_proj, peer.k_proj, peer.v_proj), ours.qkv_proj.weight.chunk(3)):
            theirs.weight.copy_(mine)
        peer.conv1d.weight.copy_(rearrange(ours.conv.weight, "c w -> c 1 w"))
        gate = peer.forget_gate
        gate.f_a_proj.weight.copy_(ours.f_down.weight)
        gate.f_b_proj.weight.copy_(ours.f_up.weight)
        gate.dt_bias.copy_(ours.dt_bias)
        gate.A_log.copy_(rearrange(ours.A_log, "h -> 1 1 h 1"))
        peer.b_proj.weight.copy_(ours.b_proj.weight)
        peer.g_a_proj.weight.copy_(ours.g_down.weight)
        peer.g_b_proj.weight.copy_(ours.g_up.weight)
        ours.norm_weight.uniform_(0.5, 1.5)  # not all ones, so a norm without its gain would show
        peer.o_norm.weight.copy_(ours.norm_weight)
        peer.o_proj.weight.copy_(ours.o_proj.weight)
    x = torch.randn(BATCH, SEQ_LEN, DIM, dtype=torch.float64)
    torch.testing.assert_close(peer(x), ours(x)[0], **_F32)


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64)


B, T, H, K = 2, 19, 2, 8


def _unit(*shape: int) -> torch.Tensor:
    return F.normalize(_rand(*shape), dim=-1)


def test_comba_peer_op_is_ours() -> None:
    """fla's two Comba references differ once the decay is on: the per-step one decays the whole
    transition, ``alpha (I - beta k p^T)`` as ours does, the chunked one (the peer, same cost)
    only the identity, ``alpha I - beta k p^T``; without decay all three agree."""
    torch.manual_seed(0)
    q, k = _unit(B, T, H, K), _unit(B, T, H, K)
    v, p = _rand(B, T, H, K), 0.7 * _unit(B, T, H, K)
    beta, g = torch.rand(B, T, H, dtype=torch.float64), F.logsigmoid(_rand(B, T, H))
    recurrent, _ = _fla_op("comba", "naive_recurrent_comba")(q, k, v, p, beta, g, scale=K**-0.5)
    ours, _ = comba_reference(q, k, v, p, beta, g, scale=K**-0.5)
    torch.testing.assert_close(recurrent.double(), ours, **_F32)
    no_decay = torch.zeros_like(g)
    chunked, _ = _fla_op("comba", "naive_chunk_comba")(
        q, k, v, p, no_decay, beta, chunk_size=8, scale=K**-0.5
    )
    ours, _ = comba_reference(q, k, v, p, beta, no_decay, scale=K**-0.5)
    torch.testing.assert_close(chunked.double(), ours, **_F32)


def test_gated_deltaproduct_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    n = 2
    q, k, v = _unit(B, T, H, K), _unit(B, T, n, H, K), _rand(B, T, n, H, K)
    beta, g = 2 * torch.rand(B, T, n, H, dtype=torch.float64), F.logsigmoid(_rand(B, T, H))
    fla = _fla_op("gated_delta_product", "naive_recurrent_gated_delta_product")
    theirs, _ = fla(
        q,
        rearrange(k, "b t n h k -> b (t n) h k"),
        rearrange(v, "b t n h v -> b (t n) h v"),
        g,
        rearrange(beta, "b t n h -> b (t n) h"),
        scale=K**-0.5,
        num_householder=n,
    )
    ours, _ = deltaproduct_reference(q, k, v, beta, g, scale=K**-0.5)
    torch.testing.assert_close(theirs.double(), ours, **_F32)


def test_kda_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    seq_len = 32  # fla's chunked reference takes whole chunks
    q, k, v = _unit(B, seq_len, H, K), _unit(B, seq_len, H, K), _rand(B, seq_len, H, K)
    g = F.logsigmoid(_rand(B, seq_len, H, K)) / 4
    beta = torch.rand(B, seq_len, H, dtype=torch.float64)
    fla = _fla_op("kda", "naive_chunk_kda")
    theirs, _ = fla(q, k, v, g, beta, chunk_size=16)
    ours, _ = kda_reference(q, k, v, g, beta)
    torch.testing.assert_close(theirs.double(), ours, **_F32)


def test_gsa_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    slots = 5
    q, k, v = F.silu(_rand(B, T, H, K)) * K**-0.5, F.silu(_rand(B, T, H, K)), _rand(B, T, H, K)
    log_alpha = F.logsigmoid(_rand(B, T, H, slots)) / 8
    fla = _fla_op("gsa", "naive_recurrent_gsa")
    # our layer scales q itself; fla's op would scale it again
    theirs, _ = fla(q, k, v, 1 - log_alpha.exp(), log_alpha, scale=1.0)
    ours, _, _ = gsa_reference(q, k, v, log_alpha)
    torch.testing.assert_close(theirs.double(), ours, **_F32)


def test_mesanet_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    q, k, v = _unit(B, T, H, K), _unit(B, T, H, K), _rand(B, T, H, K)
    log_decay, beta = F.logsigmoid(_rand(B, T, H)), torch.rand(B, T, H, dtype=torch.float64)
    lam = 0.25 + torch.rand(H, K, dtype=torch.float64)
    fla = _fla_op("mesa_net", "naive_mesa_net_exact")
    theirs, _, _ = fla(q, k, v, log_decay, lam, beta)
    ours, _ = mesa_reference(q, k, v, log_decay, beta, lam)
    torch.testing.assert_close(theirs.double(), ours, **_F32)


def test_path_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    q, k, v, w = _rand(B, T, H, K), _rand(B, T, H, K), _rand(B, T, H, K), _unit(B, T, H, K)
    beta = 2 * torch.rand(B, T, H, dtype=torch.float64)
    fla = _fla_op("path_attn", "naive_path_attn")
    # fla's op also takes FoX's forget gate; zeros leave plain PaTH
    theirs = fla(q, k, v, w, beta, torch.zeros_like(beta), scale=K**-0.5, chunk_size=8)
    empty = q.new_zeros(B, 0, H, K)
    ours, _, _ = path_reference(q, k, v, w, beta, empty, empty, scale=K**-0.5)
    torch.testing.assert_close(theirs.double(), ours, **_F32)


def test_rwkv6_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    r, k, v = _rand(B, T, H, K), _rand(B, T, H, K), _rand(B, T, H, K)
    log_decay, bonus = -torch.exp(_rand(B, T, H, K) - 2), _rand(H, K)
    fla = _fla_op("rwkv6", "naive_recurrent_rwkv6", "recurrent_naive")
    heads_first = [rearrange(t, "b t h k -> b h t k") for t in (r, k, v, log_decay)]
    theirs, _ = fla(*heads_first, bonus, scale=1.0)  # RWKV reads unscaled
    ours, _ = rwkv6_reference(r, k, v, log_decay, bonus)
    torch.testing.assert_close(rearrange(theirs, "b h t v -> b t h v").double(), ours, **_F32)


def test_deltaformer_peer_scores_its_correction_with_queries() -> None:
    """fla's reference scores the value correction with ``q_t . k_i`` where the paper (and our
    layer) use ``k_t . k_i``: the same cost, the same result only when ``q = k``."""
    torch.manual_seed(0)
    ours = create_token_mixer("deltaformer", dim=DIM, num_heads=HEADS, rotary_base=None).double()
    peer = _build(PEERS["deltaformer"][0]).double()
    with torch.no_grad():
        qkv = ours.qkv_proj.weight
        peer.qkv.weight.copy_(qkv)
        peer.o.weight.copy_(ours.o_proj.weight)
        peer.inputs.beta_proj.weight.copy_(ours.b_proj.weight)
    x = torch.randn(BATCH, SEQ_LEN, DIM, dtype=torch.float64)
    assert not torch.allclose(peer(x), ours(x)[0], **_F32)
    with torch.no_grad():
        tied = torch.cat([qkv[DIM : 2 * DIM], qkv[DIM:]])  # queries := keys
        peer.qkv.weight.copy_(tied)
        ours.qkv_proj.weight.copy_(tied)
    torch.testing.assert_close(peer(x), ours(x)[0], **_F32)


def test_rwkv7_peer_op_is_ours() -> None:
    torch.manual_seed(0)
    seq_len = 32  # fla's chunked form takes whole chunks of 32
    r, k, v = _rand(B, seq_len, H, K), _rand(B, seq_len, H, K), _rand(B, seq_len, H, K)
    kappa, a = _unit(B, seq_len, H, K), torch.rand(B, seq_len, H, K, dtype=torch.float64)
    log_w = -0.6065 * torch.sigmoid(_rand(B, seq_len, H, K))
    fla = _fla_op("generalized_delta_rule/dplr", "dplr_chunkwise")
    # fla casts only some inputs to float32, so all go in as float32; it scales r by K^-1/2
    heads_first = [rearrange(t, "b t h k -> b h t k").float() for t in (r, k, v, -kappa, a * kappa, log_w)]
    theirs, _ = fla(*heads_first)
    ours, _ = rwkv7_reference(r, log_w, k, v, kappa, a, scale=K**-0.5)
    torch.testing.assert_close(rearrange(theirs, "b h t v -> b t h v").double(), ours, **_F32)
