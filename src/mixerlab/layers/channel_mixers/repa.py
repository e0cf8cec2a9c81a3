"""Re-parameterisable MLP ``repa_mlp`` of RePaViT (arXiv:2505.21847).

Shapes: ``x: [..., D]``; hidden ``[..., H]`` split into ``A`` active channels (through the
activation) and ``H - A`` idle channels (linear); after :meth:`RePaMLP.fold` the idle path is one
``[D, D]`` matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_choice
from mixerlab.layers.channel_mixers.mlp import ACTIVATIONS, hidden_width
from mixerlab.registry import CHANNEL_MIXERS


@CHANNEL_MIXERS.register(
    "repa_mlp",
    paper="RePaViT: Scalable Vision Transformer Acceleration via Structural Reparameterization on "
    "Feedforward Network Layers",
    arxiv="2505.21847",
    test_kwargs={"dim": 8, "expand": 2, "batchnorm": True},
)
class RePaMLP(nn.Module):
    """RePaViT (arXiv:2505.21847): channel-idle MLP whose linear path folds away for inference.

    Training form, ``h = x W_1 + b_1`` split into active ``h_a`` (the first ``A = active_ratio H``
    channels) and idle ``h_i``::

        y = BN([act(h_a), h_i]) W_2 + b_2

    The idle channels never meet a non-linearity, so after training (:meth:`fold`, eval mode) the
    layer becomes ``y = act(x W_1a + b_1a) W_2a' + x M + c`` with ``M = W_1i W_2i'`` a single
    ``[D, D]`` matrix, fewer FLOPs than the ``2 D (H - A)`` of the idle path when ``H - A > D / 2``,
    and the (eval-mode, affine) BatchNorm merged into ``W_2'``. The paper's default idle share is
    ``1 - active_ratio = 0.75`` with a 4x hidden layer. ``batchnorm=False`` (default) drops the BN:
    in training mode BN mixes statistics across positions and batch elements, which leaks future
    tokens in a causal model; the paper uses it in (non-causal) ViTs.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4.0,
        hidden_dim: int | None = None,
        active_ratio: float = 0.25,
        activation: str = "gelu",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        hidden = hidden_width("repa_mlp", dim, expand, hidden_dim)
        check(0 < active_ratio < 1, "repa_mlp", "active_ratio", active_ratio, "expected in (0, 1)")
        check_choice("repa_mlp", "activation", activation, tuple(ACTIVATIONS))
        self.dim = dim
        self.active = min(hidden - 1, max(1, round(active_ratio * hidden)))
        self.up = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[activation]()
        self.norm = nn.BatchNorm1d(hidden) if batchnorm else None
        self.down = nn.Linear(hidden, dim)
        self.folded: nn.ModuleDict | None = None

    def reset_parameters(self) -> None:
        """Back to the trainable two-path layer: a :meth:`fold` is dropped (its weights came from
        the old ones); ``up``, ``down`` and the BatchNorm reset themselves."""
        self.folded = None
        for p in (*self.up.parameters(), *self.down.parameters()):
            p.requires_grad_(True)

    def forward(self, x: Tensor) -> Tensor:
        if self.folded is not None:
            f = self.folded
            return f["down"](self.act(f["up"](x))) + f["linear"](x)
        h = self.up(x)
        h = torch.cat([self.act(h[..., : self.active]), h[..., self.active :]], dim=-1)
        if self.norm is not None:
            h = self.norm(h.reshape(-1, h.shape[-1])).reshape(h.shape)
        return self.down(h)

    @torch.no_grad()
    def fold(self) -> RePaMLP:
        """Merge the idle path (and BN) into dense weights; the layer is then inference-only."""
        check(
            not self.training, "repa_mlp", "training", True, "fold() needs eval mode (BN statistics frozen)"
        )
        w2, b2 = self.down.weight.t(), self.down.bias  # [H, D]
        if self.norm is not None:
            scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
            shift = self.norm.bias - self.norm.running_mean * scale
            b2 = b2 + shift @ w2
            w2 = scale[:, None] * w2
        a = self.active
        w1, b1 = self.up.weight.t(), self.up.bias  # [D, H]
        up = nn.Linear(self.dim, a).to(w1)
        up.weight.copy_(w1[:, :a].t())
        up.bias.copy_(b1[:a])
        down = nn.Linear(a, self.dim, bias=False).to(w1)
        down.weight.copy_(w2[:a].t())
        linear = nn.Linear(self.dim, self.dim).to(w1)
        linear.weight.copy_((w1[:, a:] @ w2[a:]).t())
        linear.bias.copy_(b1[a:] @ w2[a:] + b2)
        self.folded = nn.ModuleDict({"up": up, "down": down, "linear": linear})
        for p in (*self.up.parameters(), *self.down.parameters()):
            p.requires_grad_(False)
        return self
