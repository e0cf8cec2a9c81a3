"""FinalMLP's gated stream ``finalmlp_gate`` (arXiv:2304.03012).

Shapes: ``x: [..., D]``; gate MLP ``D -> G -> D``; stream MLP ``D -> H -> D``.
"""

from __future__ import annotations

from torch import Tensor, nn

from mixerlab.errors import check_choice
from mixerlab.layers.channel_mixers.mlp import ACTIVATIONS, hidden_width
from mixerlab.registry import CHANNEL_MIXERS


@CHANNEL_MIXERS.register(
    "finalmlp_gate",
    paper="FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction",
    arxiv="2304.03012",
    test_kwargs={"dim": 8, "expand": 2, "gate_dim": 4},
)
class FinalMLPGate(nn.Module):
    """FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction (arXiv:2304.03012).

    One FinalMLP stream with its stream-specific feature gating::

        g = 2 sigmoid(W_g2 relu(W_g1 c)),   y = MLP(g * x)

    The paper gates the feature embeddings ``x`` with a condition ``c`` (a chosen subset of the
    fields, or a learnable vector) and fuses two such streams with a bilinear head to one CTR logit.
    As a channel mixer the condition is the token itself (``c = x``) and the output stays ``D``-wide,
    so the two-stream bilinear fusion, which exists to produce a scalar, is left to a model head.
    ``2 sigmoid(0) = 1``: at a zero gate pre-activation the gate passes features unchanged.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4.0,
        hidden_dim: int | None = None,
        gate_dim: int | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = hidden_width("finalmlp_gate", dim, expand, hidden_dim)
        gate = hidden_width("finalmlp_gate", dim, 1.0, gate_dim)
        check_choice("finalmlp_gate", "activation", activation, tuple(ACTIVATIONS))
        self.dim = dim
        self.gate = nn.Sequential(nn.Linear(dim, gate), nn.ReLU(), nn.Linear(gate, dim))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), ACTIVATIONS[activation](), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(2 * self.gate(x).sigmoid() * x)
