"""ExcelFormer (arXiv:2301.02819): semi-permeable attention over features ranked by mutual information.

Shapes: fields ``[B, M, D]`` (``M = F + K`` numerical and categorical fields, in the table's
order), heads ``[B, H, M, K]``; read-out ``[B, M, D] -> [B, D] -> [B, num_classes]`` or ``[B]``.

The ranking comes from the training split: :func:`mutual_information` scores each field against
the target with scikit-learn (``mutual_info_classif`` / ``mutual_info_regression``), and
:meth:`ExcelFormer.fit_importance` stores the scores in the model's ``importance`` buffer (kept in
its checkpoint). A model whose importance was never set ranks every field equal, and then every
field sees every other (plain attention): a run must fit it on its training rows first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
from mixerlab.layers.spec import Spec
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.stems import FeatureTokenizer
from mixerlab.models.tabular_models import TableModel, check_own_layers, output_size
from mixerlab.registry import MODELS
from mixerlab.tasks.base import TaskData


def mutual_information(data: TaskData, *, seed: int = 0) -> Tensor:
    """Mutual information of each field with the target, ``[F + K]`` float64 (numerical first).

    Integer targets are classes (``mutual_info_classif``), float ones values
    (``mutual_info_regression``); categorical fields are declared discrete. ``seed`` fixes
    scikit-learn's nearest-neighbour jitter, so the scores are a function of the data.
    """
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    inputs = data.inputs
    check(
        isinstance(inputs, dict), "excelformer", "data.inputs", type(inputs).__name__, "expected a table dict"
    )
    columns = [inputs["numerical"].double()] if "numerical" in inputs else []
    discrete = [False] * (columns[0].shape[1] if columns else 0)
    if "categorical" in inputs:
        columns.append(inputs["categorical"].double())
        discrete += [True] * inputs["categorical"].shape[1]
    x = torch.cat(columns, 1).numpy()
    y = data.targets.numpy()
    score = mutual_info_regression if data.targets.is_floating_point() else mutual_info_classif
    return torch.as_tensor(score(x, y, discrete_features=discrete, random_state=seed), dtype=torch.float64)


def semi_permeable_mask(importance: Tensor) -> Tensor:
    """``[M, M]`` bool: field ``i`` may attend to field ``j`` iff ``importance[j] >= importance[i]``."""
    return importance[None, :] >= importance[:, None]


class GatedEmbedding(nn.Module):
    """ExcelFormer's embedding: ``e_j = (x_j W1_j + b1_j) * tanh(x_j W2_j + b2_j)`` per field.

    Both paths are FT-Transformer tokenizers (a categorical field takes a row of its table).
    ``{"numerical": [B, F], "categorical": [B, K]} -> [B, F + K, D]``.
    """

    def __init__(self, num_features: int, dim: int, cardinalities: list[int] | None) -> None:
        super().__init__()
        self.value = FeatureTokenizer(num_features, dim, cardinalities, class_token=False)
        self.gate = FeatureTokenizer(num_features, dim, cardinalities, class_token=False)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.value(inputs)[0] * torch.tanh(self.gate(inputs)[0])


class SemiPermeableAttention(nn.Module):
    """ExcelFormer's semi-permeable attention (arXiv:2301.02819): a field attends only to fields at
    least as informative as itself, so a less informative field never changes a more informative
    one's representation. ``[B, M, D] -> [B, M, D]``; the output projection exists with > 1 head,
    as in the authors' model, and ``q, k, v`` start small (their attenuated initialisation).
    """

    def __init__(self, dim: int, num_heads: int, init_scale: float = 0.01) -> None:
        super().__init__()
        check_divisible("excelformer", "dim", dim, "num_heads", num_heads)
        self.num_heads, self.init_scale = num_heads, init_scale
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim) if num_heads > 1 else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Attenuated initialisation: q, k, v drawn at init_scale of the default bound, zero biases.
        for layer in (self.query, self.key, self.value):
            bound = self.init_scale / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)
        if self.out is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, importance: Tensor) -> Tensor:
        q, k, v = (
            rearrange(f(x), "b m (h k) -> b h m k", h=self.num_heads)
            for f in (self.query, self.key, self.value)
        )
        allowed = semi_permeable_mask(importance)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        y = rearrange(y, "b h m k -> b m (h k)")
        return y if self.out is None else self.out(y)


class ExcelFormerLayer(nn.Module):
    """One ExcelFormer layer: ``x + SPA(LN(x))``, then ``x + a * tanh(b)`` with ``[a, b] = W LN(x)``
    (the attentive GLU feed-forward, no output projection). The first layer's attention reads the
    embeddings without a norm, as the authors' pre-norm model. ``[B, M, D] -> [B, M, D]``.
    """

    def __init__(self, dim: int, num_heads: int, first: bool, init_scale: float) -> None:
        super().__init__()
        self.norm0 = nn.Identity() if first else nn.LayerNorm(dim)
        self.attention = SemiPermeableAttention(dim, num_heads, init_scale)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Linear(dim, 2 * dim)
        self.init_scale = init_scale
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = self.init_scale / math.sqrt(self.ffn.in_features)
        nn.init.uniform_(self.ffn.weight, -bound, bound)
        nn.init.zeros_(self.ffn.bias)

    def forward(self, x: Tensor, importance: Tensor) -> Tensor:
        x = x + self.attention(self.norm0(x), importance)
        a, b = self.ffn(self.norm1(x)).chunk(2, dim=-1)
        return x + a * torch.tanh(b)


class ExcelFormer(TableModel):
    """ExcelFormer: Can a DNN be a Sure Bet for Tabular Prediction? (arXiv:2301.02819).

    Gated field embeddings, ``depth`` layers of semi-permeable attention and the GLU feed-forward,
    then a linear map over the fields ``[B, M, D] -> [B, D]``, layer norm, PReLU and the output
    layer. ``importance`` ``[M]`` (a buffer) ranks the fields: set it with :meth:`fit_importance`
    on the training split. Its mixup training schemes are the ``excelformer_mixup`` method.
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        depth: int,
        num_heads: int,
        out_features: int,
        squeeze: bool,
        cardinalities: list[int] | None = None,
        init_scale: float = 0.01,
        importance: list[float] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("excelformer", "depth", depth)
        check_positive_int("excelformer", "num_heads", num_heads)
        check(init_scale > 0, "excelformer", "init_scale", init_scale, "expected > 0")
        self.embedding = GatedEmbedding(num_features, dim, cardinalities)
        num_fields = self.embedding.value.num_tokens()
        self.layers = nn.ModuleList(
            ExcelFormerLayer(dim, num_heads, i == 0, init_scale) for i in range(depth)
        )
        self.pool = nn.Linear(num_fields, 1)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.PReLU()
        self.head = nn.Linear(dim, out_features)
        self.squeeze = squeeze
        self.register_buffer("importance", torch.empty(num_fields))
        # The configured scores (an option, so a reset or a meta build restores them).
        self.initial_importance = None if importance is None else [float(s) for s in importance]
        check(
            importance is None
            or (len(importance) == num_fields and all(math.isfinite(float(s)) for s in importance)),
            "excelformer",
            "importance",
            importance,
            f"expected {num_fields} finite scores, one per field (numerical first)",
        )
        self.reset_parameters()

    @property
    def stem(self) -> FeatureTokenizer:
        """The value path of the embedding: what the table's inputs look like to this model."""
        return self.embedding.value

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The configured scores; without them every field ranks equal until fitted on data.
        if self.initial_importance is None:
            nn.init.ones_(self.importance)
        else:
            scores = torch.as_tensor(self.initial_importance, device=self.importance.device)
            self.importance.copy_(scores)

    @torch.no_grad()
    def set_importance(self, scores: Tensor | list[float]) -> None:
        """Rank the fields by ``scores`` ``[M]`` (higher is more informative)."""
        scores = torch.as_tensor(scores, dtype=self.importance.dtype, device=self.importance.device)
        check(
            scores.shape == self.importance.shape and bool(torch.isfinite(scores).all()),
            "excelformer",
            "importance",
            scores.tolist(),
            f"expected {self.importance.numel()} finite scores, one per field (numerical first)",
        )
        self.importance.copy_(scores)

    def fit_importance(self, data: TaskData, *, seed: int = 0) -> Tensor:
        """Score the fields by mutual information on ``data`` (the training split) and keep the scores."""
        scores = mutual_information(data, seed=seed)
        self.set_importance(scores)
        return scores

    def fit_to_data(self, data: TaskData) -> None:
        """The hook a trainer calls with the training split before training: fit the importance."""
        self.fit_importance(data)

    def fields(self, inputs: dict[str, Tensor]) -> Tensor:
        """Field representations ``[B, M, D]`` after every layer."""
        x = self.embedding(inputs)
        for layer in self.layers:
            x = layer(x, self.importance)
        return x

    def forward(self, inputs: dict[str, Tensor], *, state: State | None = None, mask: Tensor | None = None):
        x = rearrange(self.pool(rearrange(self.fields(inputs), "b m d -> b d m")), "b d 1 -> b d")
        return self.read(self.head(self.act(self.norm(x)))), None


@MODELS.register(
    "excelformer",
    paper="ExcelFormer: Can a DNN be a Sure Bet for Tabular Prediction?",
    arxiv="2301.02819",
    summary="Table model: semi-permeable attention over fields ranked by mutual information, GLU FFN.",
    test_kwargs={
        "num_features": 3,
        "cardinalities": [4],
        "num_classes": 2,
        "dim": 8,
        "depth": 2,
        "importance": [0.3, 0.1, 0.2, 0.05],
    },
    meta={"kinds": ("classify", "regress")},
)
def excelformer(
    *,
    num_features: int,
    cardinalities: list[int] | None = None,
    num_classes: int | None = None,
    num_outputs: int | None = None,
    dim: int = 32,
    depth: int = 3,
    num_heads: int = 4,
    init_scale: float = 0.01,
    importance: list[float] | None = None,
    mixer: Spec = "none",
    channel_mixer: Spec = "none",
    norm: Spec = "none",
) -> ExcelFormer:
    """ExcelFormer (arXiv:2301.02819) for a table task; ``importance`` gives the fields' scores.

    Without ``importance`` the fields rank equal until :meth:`ExcelFormer.fit_importance` runs on
    the training split. ``mixer``, ``channel_mixer`` and ``norm`` must stay ``"none"``.
    """
    check_own_layers("excelformer", mixer=mixer, channel_mixer=channel_mixer, norm=norm)
    out = output_size("excelformer", num_classes, num_outputs)
    model = ExcelFormer(
        num_features,
        dim,
        depth,
        num_heads,
        out,
        num_classes is None and out == 1,
        cardinalities,
        init_scale,
        importance,
    )
    return model
