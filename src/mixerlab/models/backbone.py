"""A stack of residual blocks, possibly with a different token mixer per layer (a hybrid).

``mixing`` is what the model needs from every mixer (``"causal"`` for a language model,
``"noncausal"`` for images and tables, ``"2d"`` for a scan over an image's patch grid; see
:mod:`mixerlab.layers.mixing`), given as a name or a spec dict such as
``{"name": "noncausal", "combine": "gate"}``. A mixer that cannot mix that way is a clear error.

Shapes: ``x: [B, T, D] -> [B, T, D]``. The state of a backbone is a dict from layer index (as a
string) to that layer's mixer state, so it is a state like any other (see ``state_numel``).
"""

from __future__ import annotations

from torch import Tensor, nn

from mixerlab.errors import ConfigError, check_positive_int
from mixerlab.layers.block import Block
from mixerlab.layers.mixing import make_mixer, mixer_class
from mixerlab.layers.sharing import sharing_scope
from mixerlab.layers.spec import Spec, build, split_spec
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.registry import CHANNEL_MIXERS, NORMS


def schedule(field: str, spec: Spec | list[Spec], depth: int) -> list[Spec]:
    """Expand one spec, or a per-layer pattern that tiles ``depth``, into ``depth`` specs."""
    if not isinstance(spec, list):
        return [spec] * depth
    if not spec or depth % len(spec) != 0:
        raise ConfigError(
            "backbone", field, spec, f"a list must have depth={depth} entries or a length that divides it"
        )
    return spec * (depth // len(spec))


class Backbone(nn.Module):
    """Stack of pre-norm residual blocks with a final norm; hybrids by a per-layer mixer list.

    ``mixer=["gla", "gla", "attention"]`` with ``depth=3`` gives two GLA layers and one attention
    layer; with ``depth=6`` the pattern repeats.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        mixer: Spec | list[Spec] = "attention",
        channel_mixer: Spec | list[Spec] = "swiglu",
        norm: Spec = "rmsnorm",
        mixing: Spec = "causal",
        grid: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        check_positive_int("backbone", "dim", dim)
        check_positive_int("backbone", "depth", depth)
        self.dim, self.depth = dim, depth
        self.mixing, mixing_options = split_spec(mixing, "mixing")
        if self.mixing == "2d":
            # The scan wrapper needs the patch grid of the stem.
            mixing_options = {"grid": grid, "num_prefix_tokens": num_prefix_tokens, **mixing_options}
        mixers = schedule("mixer", mixer, depth)
        channels = schedule("channel_mixer", channel_mixer, depth)
        for spec in mixers:
            if self.mixing == "causal" and not getattr(mixer_class(spec), "causal", True):
                raise ConfigError(
                    split_spec(spec, "token mixer")[0],
                    "mixing",
                    "causal",
                    "this mixer is non-causal only; use it in a model with mixing 'noncausal'",
                )
        # Layers of this model may share modules (WideNet); layers of two models never do.
        with sharing_scope():
            self.blocks = nn.ModuleList(
                self._block(dim, m, c, norm, self.mixing, mixing_options) for m, c in zip(mixers, channels)
            )
        self.norm = build(NORMS, norm, dim=dim)

    @staticmethod
    def _block(
        dim: int, mixer: Spec, channel_mixer: Spec, norm: Spec, mixing: str, mixing_options: dict
    ) -> Block:
        return Block(
            mixer=make_mixer(mixer, dim=dim, mixing=mixing, **mixing_options),
            channel_mixer=build(CHANNEL_MIXERS, channel_mixer, dim=dim),
            norm1=build(NORMS, norm, dim=dim),
            norm2=build(NORMS, norm, dim=dim),
        )

    @property
    def mixers(self) -> list[TokenMixer]:
        return [block.mixer for block in self.blocks]

    def forward(
        self,
        x: Tensor,
        *,
        state: State | None = None,
        mask: Tensor | None = None,
        cu_seqlens: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """With ``cu_seqlens: [N+1]`` (documents packed into ``x: [1, T_total, D]``, see
        ``TokenMixer.forward_packed``) each layer's state is a list of ``N`` per-document states
        (batch size 1): ``{"0": [state_doc0, ...], "1": [...], ...}``, and so is ``state``."""
        new_state: State = {}
        for i, block in enumerate(self.blocks):
            layer_state = None if state is None else state[str(i)]
            x, new_state[str(i)] = block(x, state=layer_state, mask=mask, cu_seqlens=cu_seqlens)
        return self.norm(x), new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {
            str(i): m.init_state(batch_size, device=device, dtype=dtype) for i, m in enumerate(self.mixers)
        }

    def state_size(self, seq_len: int) -> int:
        return sum(m.state_size(seq_len) for m in self.mixers)
