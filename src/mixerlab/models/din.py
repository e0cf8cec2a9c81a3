"""Deep Interest Network (arXiv:1706.06978): a user's behaviours pooled by relevance to the candidate.

Shapes: ``inputs = {"candidate": [B], "history": [B, L]}`` item ids, ``0`` = padding (or the same
ids packed as one tensor ``[B, 1 + L]``, the candidate first); item embeddings ``[B, L, D]``;
activation weights ``[B, L]``; the user's interest ``[B, D]``; output ``[B, num_classes]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.spec import Spec
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.stems import TokenEmbedding
from mixerlab.models.tabular_models import TableModel, check_own_layers
from mixerlab.registry import MODELS

PAD = 0


class LocalActivationUnit(nn.Module):
    """DIN's local activation unit (arXiv:1706.06978, eq. 3 and Fig. 2).

    ``w_j = MLP([v_A, e_j, v_A - e_j, v_A * e_j])`` for the candidate ``v_A`` and each behaviour
    ``e_j``, and the user's interest is ``v_U(A) = sum_j w_j e_j``. The weights are not
    normalised by a softmax (the paper keeps their sum as the intensity of the user's interest);
    padded behaviours weigh 0. ``[B, D], [B, L, D] -> weights [B, L]``.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * dim, hidden_dim), nn.PReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, candidate: Tensor, behaviours: Tensor, valid: Tensor) -> Tensor:
        c = candidate[:, None, :].expand_as(behaviours)
        features = torch.cat([c, behaviours, c - behaviours, c * behaviours], dim=-1)
        return self.mlp(features).squeeze(-1) * valid


class DeepInterestNetwork(TableModel):
    """Deep Interest Network for Click-Through Rate Prediction (arXiv:1706.06978).

    Items share one embedding table (the ``token`` stem; id 0 is padding). The local activation
    unit weighs each behaviour by its relevance to the candidate, the weighted sum is the user's
    interest in that candidate, and an MLP (PReLU, ``depth`` hidden layers of ``hidden_dim``)
    reads ``[candidate, interest]`` out as click logits. The paper's Dice activation and
    mini-batch-aware regularisation are not included (PReLU, its baseline activation, is used).
    """

    def __init__(self, vocab_size: int, dim: int, depth: int, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        check_positive_int("din", "depth", depth)
        check_positive_int("din", "hidden_dim", hidden_dim)
        self.stem = TokenEmbedding(vocab_size, dim)
        self.activation = LocalActivationUnit(dim, hidden_dim)
        layers: list[nn.Module] = []
        width = 2 * dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), nn.PReLU()]
            width = hidden_dim
        self.mlp = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def split(self, inputs: dict[str, Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """``(candidate [B], history [B, L])`` from the dict or the packed ``[B, 1 + L]`` ids."""
        if isinstance(inputs, Tensor):
            check(
                inputs.dim() == 2 and inputs.shape[1] >= 2 and not inputs.is_floating_point(),
                "din",
                "inputs.shape",
                tuple(inputs.shape),
                "packed item ids [B, 1 + L] (candidate first), or {'candidate': [B], 'history': [B, L]}",
            )
            return inputs[:, 0], inputs[:, 1:]
        check(
            isinstance(inputs, dict) and set(inputs) == {"candidate", "history"},
            "din",
            "inputs",
            sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__,
            "a dict with 'candidate' [B] and 'history' [B, L]",
        )
        return inputs["candidate"], inputs["history"]

    def interest(self, inputs: dict[str, Tensor] | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The candidate's embedding ``[B, D]``, the user's interest ``[B, D]`` and the weights ``[B, L]``."""
        candidate, history = self.split(inputs)
        c = self.stem(candidate[:, None])[0][:, 0]
        behaviours = self.stem(history)[0]
        valid = (history != PAD).to(behaviours.dtype)
        weights = self.activation(c, behaviours, valid)
        return c, torch.einsum("bl,bld->bd", weights, behaviours), weights

    def forward(
        self, inputs: dict[str, Tensor] | Tensor, *, state: State | None = None, mask: Tensor | None = None
    ):
        c, interest, _ = self.interest(inputs)
        return self.mlp(torch.cat([c, interest], dim=-1)), None


@MODELS.register(
    "din",
    paper="Deep Interest Network for Click-Through Rate Prediction",
    arxiv="1706.06978",
    summary="Click-through model: behaviours weighted by a local activation unit against the candidate.",
    test_kwargs={"vocab_size": 11, "num_classes": 2, "dim": 8, "depth": 2, "hidden_dim": 8},
    meta={"kinds": ("classify",)},
)
def din(
    *,
    vocab_size: int,
    num_classes: int,
    dim: int = 16,
    depth: int = 2,
    hidden_dim: int = 36,
    mixer: Spec = "none",
    channel_mixer: Spec = "none",
    norm: Spec = "none",
) -> DeepInterestNetwork:
    """DIN (arXiv:1706.06978) for a click-through task (``ctr``): ``vocab_size`` item ids incl. padding 0.

    ``mixer``, ``channel_mixer`` and ``norm`` must stay ``"none"``.
    """
    check_own_layers("din", mixer=mixer, channel_mixer=channel_mixer, norm=norm)
    check_positive_int("din", "num_classes", num_classes)
    return DeepInterestNetwork(vocab_size, dim, depth, hidden_dim, num_classes)
