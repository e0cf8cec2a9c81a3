"""The short causal depthwise convolution that many token mixers put in front of their core.

Shapes: ``x, y: [B, T, C]``; ``weight: [C, W]`` with ``W = conv_size``; ``bias: [C]``; state (the
last ``W - 1`` inputs) ``[B, W-1, C]``. The maths and its tap convention live in
:mod:`mixerlab.ops.conv1d`; this module owns the parameters, their initialisation, the optional
activation and the choice between the op's forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.ops.conv1d import causal_conv1d, causal_conv1d_recurrent, causal_conv1d_reference

__all__ = ["ShortConv", "load_legacy_conv_keys"]

ACTIVATIONS = ("silu", None)


class ShortConv(nn.Module):
    """Short causal depthwise convolution, "Mamba: Linear-Time Sequence Modeling..." (arXiv:2312.00752).

    The ``W``-tap per-channel filter that Mamba, Mamba-2, H3 (its shift SSM), Hyena, DeltaNet,
    Based, GAM and xLSTM's sLSTM run over their inputs or projections::

        y_t = act(bias + sum_{k<W} weight[:, W-1-k] * x_{t-k})      (x_{t<0}: the carried state)

    ``forward(x, state=None, *, reference=False) -> (y, state)`` with ``x: [B, T, C]`` and
    ``state: [B, W-1, C]`` (zeros when ``None``): one call over a sequence equals any split of it
    into several calls that pass the state on, one-token decoding included.

    Initialisation: PyTorch's ``nn.Conv1d`` default for a depthwise filter (fan-in ``W``), i.e.
    ``weight`` and ``bias`` uniform in ``[-1/sqrt(W), 1/sqrt(W)]``, which is what the authors' code
    of these mixers gets from its ``nn.Conv1d`` (and what fla's ``ShortConvolution`` inherits).

    Mode: the owning mixer passes ``reference=(self.mode == "reference")`` on every call, so there
    is no second mode to keep in step with the mixer's. ``reference=True`` runs
    :func:`~mixerlab.ops.conv1d.causal_conv1d_reference` (a loop over steps and taps); otherwise a
    one-token step with a state takes :func:`~mixerlab.ops.conv1d.causal_conv1d_recurrent` and
    anything else :func:`~mixerlab.ops.conv1d.causal_conv1d`.
    """

    def __init__(
        self,
        channels: int,
        conv_size: int,
        *,
        bias: bool = True,
        activation: str | None = None,
        owner: str = "ShortConv",
    ) -> None:
        super().__init__()
        check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "conv_size", conv_size)
        check(isinstance(bias, bool), owner, "bias", bias, "expected True or False")
        check(
            activation in ACTIVATIONS, owner, "activation", activation, f"expected one of {list(ACTIVATIONS)}"
        )
        self.channels, self.conv_size, self.activation = channels, conv_size, activation
        self.weight = nn.Parameter(torch.empty(channels, conv_size))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # nn.Conv1d: kaiming_uniform_(a=sqrt(5)) gives bound sqrt(6 / (1 + 5) / fan_in) = 1/sqrt(W)
        # for a depthwise filter (fan_in = W), and its bias uses the same 1/sqrt(fan_in).
        bound = self.conv_size**-0.5
        self.weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.uniform_(-bound, bound)

    def forward(
        self, x: Tensor, state: Tensor | None = None, *, reference: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``x: [B, T, C]``, ``state: [B, W-1, C]`` or None -> ``(y: [B, T, C], state: [B, W-1, C])``."""
        if reference:
            op = causal_conv1d_reference
        elif x.shape[1] == 1 and state is not None:
            op = causal_conv1d_recurrent
        else:
            op = causal_conv1d
        y, tail = op(x, self.weight, self.bias, state)
        if self.activation == "silu":
            y = F.silu(y)
        return y, tail

    def init_state(
        self, batch_size: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The empty state: zeros ``[B, W-1, C]`` (on the weight's device and dtype unless given)."""
        return torch.zeros(
            batch_size,
            self.conv_size - 1,
            self.channels,
            device=self.weight.device if device is None else device,
            dtype=self.weight.dtype if dtype is None else dtype,
        )

    def state_size(self) -> int:
        """Scalars per sequence held in the state: ``(W - 1) C``, whatever the length."""
        return (self.conv_size - 1) * self.channels

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, conv_size={self.conv_size}, bias={self.bias is not None}, "
            f"activation={self.activation}"
        )


class _LegacyConvKeys:
    """Load-time renaming of ``<name>_weight`` / ``<name>_bias`` (a class, so modules still pickle)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, state_dict: dict, prefix: str, *_: object) -> None:
        for part in ("weight", "bias"):
            old = f"{prefix}{self.name}_{part}"
            if old in state_dict:
                state_dict[f"{prefix}{self.name}.{part}"] = state_dict.pop(old)


def load_legacy_conv_keys(mixer: nn.Module, name: str) -> None:
    """Let ``mixer`` load checkpoints written before its short convolution became a ``ShortConv``.

    Those stored the filter as ``<name>_weight`` / ``<name>_bias`` on the mixer itself; the
    ``ShortConv`` registered as ``mixer.<name>`` stores ``<name>.weight`` / ``<name>.bias``. The hook
    renames the old keys on load (same shapes, same tap convention); saving writes the new keys.
    """
    mixer._register_load_state_dict_pre_hook(_LegacyConvKeys(name))
