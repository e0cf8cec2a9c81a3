"""H-Net (``hnet``): a byte-level language model that learns where to chunk its input.

Shapes: ``tokens: [B, T]`` -> encoder states ``[B, T, D]`` -> boundary probabilities ``p: [B, T]``
and decisions ``b: [B, T]`` -> chunks ``[B, M, D]`` (``M`` = the most boundaries in a row; rows
with fewer are padded at the end) -> main network ``[B, M, D]`` -> smoothed and up-sampled back to
``[B, T, D]`` -> decoder -> ``logits: [B, T, V]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.aux_loss import report_aux_loss
from mixerlab.layers.spec import Spec
from mixerlab.models.backbone import Backbone
from mixerlab.models.stems import TokenEmbedding
from mixerlab.registry import MODELS


def ratio_loss(fraction_selected: Tensor, mean_probability: Tensor, target_ratio: float) -> Tensor:
    """The ratio loss of H-Net (arXiv:2507.07955), ``N/(N-1) ((N-1) F G + (1-F)(1-G))``.

    ``F`` is the fraction of positions chosen as boundaries, ``G`` the mean boundary probability
    and ``N`` the target compression ratio (tokens per chunk). With ``F = G`` it is smallest, 1,
    at ``F = 1/N``; only ``G`` carries a gradient (``F`` counts hard decisions).
    """
    n = target_ratio
    f, g = fraction_selected, mean_probability
    return n / (n - 1) * ((n - 1) * f * g + (1 - f) * (1 - g))


class DynamicChunkingLM(nn.Module):
    """H-Net, "Dynamic Chunking for End-to-End Hierarchical Sequence Modeling" (arXiv:2507.07955).

    One stage of hierarchy: a byte-level ``encoder``; the routing module
    ``p_t = (1 - cos(q_t, k_{t-1})) / 2`` with ``q = W_q x``, ``k = W_k x`` (initialised to the
    identity, as in the paper) and ``p_0 = 1``, boundaries ``b_t = [p_t >= 1/2]``; down-sampling to
    the boundary positions; the ``main`` network on the chunks; the smoothing module
    ``z_c <- P_c z_c + (1 - P_c) z_{c-1}`` (an EMA by each chunk's boundary probability, so the
    routing gets a gradient); up-sampling (position ``t`` reads the chunk it lies in), scaled by
    the straight-through confidence ``c_t = p_t`` if ``b_t`` else ``1 - p_t`` (value 1, gradient
    of ``c_t``); a linear residual from the encoder; a byte-level ``decoder`` and the logits.

    Every step is causal: the routing at ``t`` reads ``t`` and ``t-1``; a chunk starts at its
    boundary, so position ``t`` reads a main-network output of boundaries at or before ``t``.
    During training (inside :func:`~mixerlab.layers.aux_loss.collect_aux_losses`) the ratio loss
    times ``ratio_loss_weight`` is reported as ``hnet_ratio``. No incremental decoding state.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        depth: int = 2,
        mixer: Spec | list[Spec] = "attention",
        channel_mixer: Spec | list[Spec] = "swiglu",
        norm: Spec = "rmsnorm",
        encoder_depth: int = 1,
        decoder_depth: int = 1,
        target_ratio: float = 4.0,
        ratio_loss_weight: float = 0.03,
    ) -> None:
        super().__init__()
        check_positive_int("hnet", "encoder_depth", encoder_depth)
        check_positive_int("hnet", "decoder_depth", decoder_depth)
        check(target_ratio > 1, "hnet", "target_ratio", target_ratio, "expected > 1 (tokens per chunk)")
        check(ratio_loss_weight >= 0, "hnet", "ratio_loss_weight", ratio_loss_weight, "expected >= 0")
        self.dim, self.target_ratio, self.ratio_loss_weight = dim, float(target_ratio), ratio_loss_weight
        self.stem = TokenEmbedding(vocab_size, dim)
        self.encoder = Backbone(dim, encoder_depth, mixer, channel_mixer, norm)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.main = Backbone(dim, depth, mixer, channel_mixer, norm)
        self.residual = nn.Linear(dim, dim, bias=False)
        self.decoder = Backbone(dim, decoder_depth, mixer, channel_mixer, norm)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The paper starts the routing projections at the identity: boundaries where x changes.
        nn.init.eye_(self.w_q.weight)
        nn.init.eye_(self.w_k.weight)

    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [B, T, D]`` -> boundary probabilities ``p`` and decisions ``b``, both ``[B, T]``."""
        q, k = self.w_q(x), self.w_k(x)
        cos = F.cosine_similarity(q[:, 1:], k[:, :-1], dim=-1)
        p = torch.cat([torch.ones_like(cos[:, :1]), ((1 - cos) / 2).clamp(0, 1)], dim=1)
        return p, p >= 0.5

    @staticmethod
    def downsample(x: Tensor, p: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Boundary tokens ``[B, M, D]``, their probabilities ``[B, M]`` (padding: 1) and each
        position's chunk index ``[B, T]``."""
        B = x.shape[0]
        chunk_of = b.long().cumsum(1) - 1
        M = int(b.sum(1).max())
        rows = torch.arange(B, device=x.device)[:, None].expand_as(b)
        chunks = x.new_zeros(B, M, x.shape[-1]).index_put((rows[b], chunk_of[b]), x[b])
        probs = p.new_ones(B, M).index_put((rows[b], chunk_of[b]), p[b])
        return chunks, probs, chunk_of

    @staticmethod
    def smooth(z: Tensor, probs: Tensor) -> Tensor:
        """The smoothing module: ``out_c = P_c z_c + (1 - P_c) out_{c-1}`` over chunks ``[B, M, D]``.

        Unrolled, ``out_c = sum_{j <= c} P_j prod_{j < i <= c} (1 - P_i) z_j``: one ``[M, M]``
        weight matrix per row from cumulative sums of ``log(1 - P)``, instead of ``M`` steps.
        """
        M = z.shape[1]
        log_keep = torch.log((1 - probs).clamp_min(torch.finfo(probs.dtype).tiny)).cumsum(1)  # [B, M]
        later = torch.ones(M, M, dtype=torch.bool, device=z.device).triu(1)  # j > c: not yet seen
        decay = (log_keep[:, :, None] - log_keep[:, None, :]).masked_fill(later, float("-inf")).exp()
        return torch.einsum("bcj,bj,bjd->bcd", decay, probs, z)

    @staticmethod
    def upsample(z: Tensor, chunk_of: Tensor, p: Tensor, b: Tensor) -> Tensor:
        """Chunk outputs ``[B, M, D]`` -> ``[B, T, D]``, times the straight-through confidence."""
        spread = z.gather(1, chunk_of[..., None].expand(-1, -1, z.shape[-1]))
        confidence = torch.where(b, p, 1 - p)
        return spread * (confidence + (1 - confidence).detach())[..., None]

    def forward(
        self, tokens: Tensor, *, state: Any = None, mask: Tensor | None = None
    ) -> tuple[Tensor, None]:
        check(state is None and mask is None, "hnet", "state", "given", "H-Net here runs whole sequences")
        h, _ = self.encoder(self.stem(tokens)[0])
        p, b = self.route(h)
        chunks, probs, chunk_of = self.downsample(h, p, b)
        z, _ = self.main(chunks)
        up = self.upsample(self.smooth(z, probs), chunk_of, p, b)
        y, _ = self.decoder(up + self.residual(h))
        if self.ratio_loss_weight > 0:
            loss = ratio_loss(b.float().mean(), p.float().mean(), self.target_ratio)
            report_aux_loss("hnet_ratio", self.ratio_loss_weight * loss)
        return self.head(y), None

    def state_size(self, seq_len: int) -> int:
        """The backbones' states after ``seq_len`` bytes, the main network's at the target ratio."""
        chunks = max(1, round(seq_len / self.target_ratio))
        return (
            self.encoder.state_size(seq_len) + self.main.state_size(chunks) + self.decoder.state_size(seq_len)
        )


MODELS.register(
    "hnet",
    paper="Dynamic Chunking for End-to-End Hierarchical Sequence Modeling",
    arxiv="2507.07955",
    summary="H-Net: byte encoder, learned cosine-similarity chunking, main network on chunks, decoder.",
    test_kwargs={"vocab_size": 11, "dim": 16, "depth": 1},
    meta={"kinds": ("next_token",)},
)(DynamicChunkingLM)
