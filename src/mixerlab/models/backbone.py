"""A stack of residual blocks, possibly with a different token mixer per layer (a hybrid).

``mixing`` is what the model needs from every mixer (``"causal"`` for a language model,
``"noncausal"`` for images and tables, ``"2d"`` for a scan over an image's patch grid; see
:mod:`mixerlab.layers.mixing`), given as a name or a spec dict such as
``{"name": "noncausal", "combine": "gate"}``. A mixer that cannot mix that way is a clear error.

Image models also get (see :mod:`mixerlab.models.builders`): EViT's token reorganisation between
layers (``token_reduction``, :mod:`mixerlab.models.token_reduction`); :class:`StageBackbone`, a
pyramid of stages with patch merging between them (Swin / ConvNeXt / HorNet layouts); and
:class:`MLPBackbone`, the residual MLP of "Scaling MLPs" on one flattened token.

Shapes: ``x: [B, T, D] -> [B, T, D]`` (fewer tokens after a token reduction; ``[B, T', D_last]``
through stages). The state of a backbone is a dict from layer index (as a
string) to that layer's mixer state, so it is a state like any other (see ``state_numel``).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_positive_int
from mixerlab.layers.block import Block
from mixerlab.layers.mixing import make_mixer, mixer_class
from mixerlab.layers.sharing import sharing_scope
from mixerlab.layers.spec import Spec, build, split_spec
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.models.token_reduction import TokenReorganization, check_token_reduction
from mixerlab.registry import CHANNEL_MIXERS, NORMS, TOKEN_MIXERS


def _takes_grid(spec: Spec) -> bool:
    """Whether the mixer of ``spec`` reads the patch grid (an image mixer, see vision_base)."""
    return "grid" in TOKEN_MIXERS.entry(split_spec(spec, "token mixer")[0]).parameters()


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
        token_reduction: dict[str, Any] | None = None,
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
        # EViT: a token reorganisation at the entry of each listed layer.
        self.reductions = nn.ModuleDict()
        if token_reduction is not None:
            keep_ratio, layers = check_token_reduction(token_reduction, depth)
            check(
                self.mixing == "noncausal",
                "token_reduction",
                "mixing",
                self.mixing,
                "kept tokens no longer form a grid or a sequence order; use mixing 'noncausal'",
            )
            for i in range(layers[0], depth):
                if _takes_grid(mixers[i]):
                    raise ConfigError(
                        "token_reduction",
                        "layers",
                        layers,
                        f"layer {i}'s mixer {split_spec(mixers[i], 'token mixer')[0]!r} reads the patch "
                        "grid, which a token reduction before it breaks; reduce after the grid mixers",
                    )
            for i in layers:
                self.reductions[str(i)] = TokenReorganization(keep_ratio, num_prefix_tokens)
        # Layers of this model may share modules (WideNet); layers of two models never do.
        with sharing_scope():
            self.blocks = nn.ModuleList(
                self._block(
                    dim,
                    m,
                    c,
                    norm,
                    self.mixing,
                    self._grid_options(m, mixing_options, grid, num_prefix_tokens),
                )
                for m, c in zip(mixers, channels)
            )
        self.norm = build(NORMS, norm, dim=dim)

    def _grid_options(self, mixer: Spec, options: dict, grid, num_prefix_tokens: int) -> dict:
        """Non-causal image mixers read the stem's grid (``make_mixer`` passes it to them)."""
        if self.mixing == "noncausal" and grid is not None and _takes_grid(mixer):
            return {**options, "grid": tuple(grid), "num_prefix_tokens": num_prefix_tokens}
        return options

    def tokens_per_layer(self, num_tokens: int) -> list[int]:
        """Tokens each layer mixes for an input of ``num_tokens`` (fewer after a token reduction)."""
        counts = []
        for i in range(self.depth):
            if str(i) in self.reductions:
                num_tokens = self.reductions[str(i)].kept(num_tokens)
            counts.append(num_tokens)
        return counts

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
            if str(i) in self.reductions:
                check(
                    mask is None and cu_seqlens is None,
                    "token_reduction",
                    "mask",
                    "<tensor>",
                    "a token reduction runs on whole images: no padding mask, no packing",
                )
                x = self.reductions[str(i)](x)
            layer_state = None if state is None else state[str(i)]
            x, new_state[str(i)] = block(x, state=layer_state, mask=mask, cu_seqlens=cu_seqlens)
        return self.norm(x), new_state

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {
            str(i): m.init_state(batch_size, device=device, dtype=dtype) for i, m in enumerate(self.mixers)
        }

    def state_size(self, seq_len: int) -> int:
        return sum(m.state_size(seq_len) for m in self.mixers)


class PatchMerging(nn.Module):
    """Swin's patch merging (arXiv:2103.14030): each 2x2 cell block becomes one token of width ``dim_out``.

    ``[B, P + H W, D] -> [B, P + ceil(H/2) ceil(W/2), D_out]``: the four tokens of a block are
    concatenated (an odd side is zero-padded) and projected, ``Linear(4 D, D_out)``; prefix tokens
    are projected alone, ``Linear(D, D_out)``. The previous stage's final norm is its input norm.
    """

    def __init__(self, dim: int, dim_out: int, grid: tuple[int, int], num_prefix_tokens: int) -> None:
        super().__init__()
        check(
            grid[0] * grid[1] > 1,
            "stages",
            "grid",
            grid,
            "a 1x1 grid cannot be down-sampled; use fewer stages",
        )
        self.grid, self.num_prefix_tokens = tuple(grid), num_prefix_tokens
        self.grid_out = (-(-grid[0] // 2), -(-grid[1] // 2))
        self.reduce = nn.Linear(4 * dim, dim_out)
        self.prefix = nn.Linear(dim, dim_out) if num_prefix_tokens else None

    def forward(self, x: Tensor) -> Tensor:
        P, (H, W) = self.num_prefix_tokens, self.grid
        image = rearrange(x[:, P:], "b (h w) d -> b d h w", h=H, w=W)
        image = nn.functional.pad(image, (0, W % 2, 0, H % 2))  # odd sides: zero cells
        cells = rearrange(image, "b d (h p) (w q) -> b (h w) (p q d)", p=2, q=2)
        merged = self.reduce(cells)
        if self.prefix is None:
            return merged
        return torch.cat([self.prefix(x[:, :P]), merged], dim=1)


STAGE_KEYS = ("depth", "dim", "mixer", "channel_mixer")


class StageBackbone(nn.Module):
    """A pyramid of stages, each a :class:`Backbone` on its own grid, with patch merging between.

    ``stages=[{"depth": 2, "dim": 32}, {"depth": 2, "dim": 64, "mixer": "attention"}]``: stage
    ``i`` mixes the grid halved ``i`` times at its width; a stage may name its own ``mixer`` and
    ``channel_mixer`` (ConvNet-like early stages, attention late, as in HorNet's and OverLoCK's
    layouts); what a stage leaves out comes from the model's arguments. A single stage is the
    isotropic ViT. The model's state is empty (stages are non-causal).
    """

    def __init__(
        self,
        stages: list[dict[str, Any]],
        mixer: Spec | list[Spec] = "attention",
        channel_mixer: Spec | list[Spec] = "swiglu",
        norm: Spec = "rmsnorm",
        mixing: Spec = "noncausal",
        grid: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        allowed = f"expected a non-empty list of dicts with keys {list(STAGE_KEYS)} (depth and dim required)"
        check(isinstance(stages, list) and len(stages) > 0, "stages", "stages", stages, allowed)
        check(grid is not None, "stages", "grid", grid, "stages down-sample a patch grid: use an image stem")
        for i, stage in enumerate(stages):
            check(isinstance(stage, dict), "stages", f"stages[{i}]", stage, allowed)
            unknown = sorted(set(stage) - set(STAGE_KEYS))
            check(not unknown, "stages", f"stages[{i}].{unknown[0] if unknown else ''}", stage, allowed)
            check("depth" in stage and "dim" in stage, "stages", f"stages[{i}]", stage, allowed)
        self.mixing = split_spec(mixing, "mixing")[0]
        self.dims = [s["dim"] for s in stages]
        self.dim, self.num_prefix_tokens = self.dims[-1], num_prefix_tokens
        self.stages, self.merges, self.grids = nn.ModuleList(), nn.ModuleList(), []
        current = tuple(grid)
        for i, stage in enumerate(stages):
            if i > 0:
                merge = PatchMerging(self.dims[i - 1], stage["dim"], current, num_prefix_tokens)
                self.merges.append(merge)
                current = merge.grid_out
            self.grids.append(current)
            self.stages.append(
                Backbone(
                    dim=stage["dim"],
                    depth=stage["depth"],
                    mixer=stage.get("mixer", mixer),
                    channel_mixer=stage.get("channel_mixer", channel_mixer),
                    norm=norm,
                    mixing=mixing,
                    grid=current,
                    num_prefix_tokens=num_prefix_tokens,
                )
            )

    @property
    def mixers(self) -> list[TokenMixer]:
        return [m for stage in self.stages for m in stage.mixers]

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        check(mask is None, "stages", "mask", "<tensor>", "stages mix whole images: no padding mask")
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.merges[i - 1](x)
            x, _ = stage(x)
        return x, {}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {}

    def state_size(self, seq_len: int) -> int:
        return 0


class NoTokenMixing(TokenMixer):
    """No token mixing (used by :class:`MLPBackbone`): one flattened token has nothing to mix with.

    Not registered: it is the absence of a mixer, the block's first sub-layer contributes zero.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None):
        return torch.zeros_like(x), {}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {}

    def state_size(self, seq_len: int) -> int:
        return 0


class MLPBackbone(nn.Module):
    """The residual MLP of "Scaling MLPs: A Tale of Inductive Bias" (arXiv:2306.13575).

    The image is flattened into one token (the stem), then ``depth`` pre-norm residual
    inverted-bottleneck blocks ``h + W_2 GELU(W_1 norm(h))`` (the channel mixer, ``expand`` times
    wider inside) and a final norm: no inductive bias about images at all.
    """

    mixing = "noncausal"

    def __init__(self, dim: int, depth: int, channel_mixer: Spec = "mlp", norm: Spec = "layernorm") -> None:
        super().__init__()
        check_positive_int("backbone", "dim", dim)
        check_positive_int("backbone", "depth", depth)
        self.dim, self.depth = dim, depth
        channels = schedule("channel_mixer", channel_mixer, depth)
        self.blocks = nn.ModuleList(
            Block(
                mixer=NoTokenMixing(dim),
                channel_mixer=build(CHANNEL_MIXERS, c, dim=dim),
                norm1=nn.Identity(),
                norm2=build(NORMS, norm, dim=dim),
            )
            for c in channels
        )
        self.norm = build(NORMS, norm, dim=dim)

    @property
    def mixers(self) -> list[TokenMixer]:
        return [block.mixer for block in self.blocks]

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x), {}

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {}

    def state_size(self, seq_len: int) -> int:
        return 0
