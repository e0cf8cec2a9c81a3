"""ModernNCA, "Revisiting Nearest Neighbor for Tabular Data: A Deep Tabular Baseline Two Decades
Later" (arXiv:2407.03257), a TabR-style retrieval model (TabR, arXiv:2307.14338).

A learned embedding ``e(x)`` of each row (the feature tokenizer, flattened, then a residual MLP)
and a prediction that is a soft nearest-neighbour vote over candidate training rows::

    w_c = softmax_c(-||e(x) - e(x_c)||_2 / temperature),   p(y | x) = sum_c w_c onehot(y_c)

(for regression the vote is ``sum_c w_c y_c``). Classification outputs ``log p`` ``[B, K]``,
so cross-entropy on it is ModernNCA's loss.

The candidates are the task's training rows, held by the model as buffers (``candidate_*``,
saved with its weights): :meth:`ModernNCA.set_candidates` sets them from the training split
``TaskData`` before training or prediction (or the builder's ``candidates`` option); a model
without them raises an error saying so. A trainer calls ``set_candidates`` with the training
split after building the model; one that does not cannot train ``modernnca``.
In training, each step votes over a random ``sample_rate`` share of them (ModernNCA's stochastic
candidate sampling), and a query row never votes for itself: a candidate with exactly the
query's features is the query's own row and is excluded.

Shapes: ``{"numerical": [B, F], "categorical": [B, K]} -> tokens [B, F + K, D] -> e [B, D]``;
candidates ``[M, F]``, ``[M, K]``, labels ``[M]``; prediction ``[B, num_classes]`` or ``[B]``.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State
from mixerlab.models.stems import FeatureTokenizer
from mixerlab.registry import MODELS

# Floor of a vote's probability, so that its log stays finite.
MIN_PROB = 1e-12


class ModernNCA(nn.Module):
    """ModernNCA (arXiv:2407.03257): a soft nearest-neighbour vote of candidate rows in a learned space.

    ``num_classes`` > 0: classification (log-probabilities ``[B, K]``); ``num_classes=None``:
    regression (``[B]``). ``forward(inputs) -> (prediction, None)``.
    """

    def __init__(
        self,
        num_features: int,
        dim: int = 64,
        *,
        cardinalities: list[int] | None = None,
        num_classes: int | None = None,
        depth: int = 1,
        temperature: float = 1.0,
        sample_rate: float = 0.5,
        candidates: Any = None,
    ) -> None:
        super().__init__()
        owner = "modernnca"
        check_positive_int(owner, "dim", dim)
        check(isinstance(depth, int) and depth >= 0, owner, "depth", depth, "expected an integer >= 0")
        check(temperature > 0, owner, "temperature", temperature, "expected > 0")
        check(0 < sample_rate <= 1, owner, "sample_rate", sample_rate, "expected a fraction in (0, 1]")
        if num_classes is not None:
            check_positive_int(owner, "num_classes", num_classes)
        self.num_classes, self.temperature, self.sample_rate = num_classes, temperature, sample_rate
        self.stem = FeatureTokenizer(num_features, dim, cardinalities, class_token=False)
        self.embed = nn.Linear(self.stem.num_tokens() * dim, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
            for _ in range(depth)
        )
        # The candidates' values, kept outside the buffers so that an initialisation (reset_all,
        # materialising a meta build) puts them back; set by set_candidates or the candidates option.
        label_dtype = torch.long if num_classes is not None else torch.float32
        self._candidates = {
            "numerical": torch.zeros(0, num_features, device="cpu"),
            "categorical": torch.zeros(0, len(self.stem.cardinalities), dtype=torch.long, device="cpu"),
            "targets": torch.zeros(0, dtype=label_dtype, device="cpu"),
        }
        self.register_buffer("candidate_numerical", torch.zeros(0, num_features))
        self.register_buffer("candidate_categorical", torch.zeros(0, len(self.stem.cardinalities)).long())
        self.register_buffer("candidate_labels", torch.zeros(0, dtype=label_dtype))
        if candidates is not None:
            self.set_candidates(candidates)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The candidates are data, not weights: an initialisation restores them as they were set.
        for name, key in (
            ("candidate_numerical", "numerical"),
            ("candidate_categorical", "categorical"),
            ("candidate_labels", "targets"),
        ):
            buffer, value = getattr(self, name), self._candidates[key]
            if buffer.shape != value.shape:
                setattr(self, name, torch.empty(value.shape, dtype=buffer.dtype, device=buffer.device))
            getattr(self, name).copy_(value)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Saved candidates may be any number of rows: take them (resizing the buffers) first.
        names = {"numerical": "candidate_numerical", "categorical": "candidate_categorical"}
        names["targets"] = "candidate_labels"
        if all(prefix + name in state_dict for name in names.values()):
            self._candidates = {
                key: state_dict[prefix + name].detach().to("cpu", self._candidates[key].dtype).clone()
                for key, name in names.items()
            }
            self.reset_parameters()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def state_size(self, seq_len: int) -> int:
        """Carries nothing between calls: 0 (the candidates are data, not a per-example state)."""
        return 0

    @torch.no_grad()
    def fit_to_data(self, data: Any) -> None:
        """The trainer's hook for models that read the training split first: the candidates."""
        self.set_candidates(data)

    def set_candidates(self, data: Any) -> None:
        """Take the candidates from the training split: a ``TaskData`` (``inputs``, ``targets``) or a
        dict ``{"numerical": [M, F], "categorical": [M, K] (if the table has any), "targets": [M]}``."""
        if isinstance(data, dict):
            inputs, targets = data, data.get("targets")
        else:
            inputs, targets = data.inputs, data.targets
        check(
            isinstance(inputs, dict) and "numerical" in inputs and targets is not None,
            "modernnca",
            "candidates",
            type(inputs).__name__,
            "expected a table's training rows: numerical [M, F] (and categorical [M, K]) with targets [M]",
        )
        numerical = torch.as_tensor(inputs["numerical"], dtype=torch.float32, device="cpu")
        targets = torch.as_tensor(targets, dtype=self._candidates["targets"].dtype, device="cpu")
        m = len(targets)
        categorical = inputs.get("categorical")
        categorical = (
            torch.zeros(m, 0, dtype=torch.long)
            if categorical is None or not self.stem.cardinalities
            else torch.as_tensor(categorical, dtype=torch.long, device="cpu")
        )
        check(m > 1, "modernnca", "candidates", m, "expected at least 2 training rows")
        check(
            numerical.shape == (m, self.stem.num_features)
            and categorical.shape == (m, len(self.stem.cardinalities)),
            "modernnca",
            "candidates",
            (tuple(numerical.shape), tuple(categorical.shape), m),
            f"expected numerical [M, {self.stem.num_features}], categorical "
            f"[M, {len(self.stem.cardinalities)}] and targets [M]",
        )
        self._candidates = {"numerical": numerical, "categorical": categorical, "targets": targets}
        self.reset_parameters()

    def embedding(self, inputs: dict[str, Tensor]) -> Tensor:
        """The learned embedding ``e(x)``, ``[B, D]``."""
        tokens, _ = self.stem(inputs)
        h = self.embed(rearrange(tokens, "b t d -> b (t d)"))
        for block in self.blocks:
            h = h + block(h)
        return h

    def _table(self, numerical: Tensor, categorical: Tensor) -> dict[str, Tensor]:
        table = {"numerical": numerical}
        if self.stem.cardinalities:
            table["categorical"] = categorical
        return table

    def forward(
        self, inputs: dict[str, Tensor], *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, None]:
        check(state is None and mask is None, "modernnca", "state", state, "ModernNCA takes no state or mask")
        m = len(self.candidate_labels)
        check(
            m > 1,
            "modernnca",
            "candidates",
            m,
            "set the training rows first: model.set_candidates(task.train_data(seed))",
        )
        numerical, categorical = self.candidate_numerical, self.candidate_categorical
        labels = self.candidate_labels
        if self.training and self.sample_rate < 1:
            keep = torch.randperm(m, device=labels.device)[: max(2, round(self.sample_rate * m))]
            numerical, categorical, labels = numerical[keep], categorical[keep], labels[keep]
        query = self.embedding(inputs)  # [B, D]
        keys = self.embedding(self._table(numerical, categorical))  # [M, D]
        logits = -torch.cdist(query, keys) / self.temperature  # [B, M]
        if self.training:
            # A candidate with exactly the query's features is its own row: it may not vote.
            same = (inputs["numerical"][:, None].to(numerical.dtype) == numerical[None]).all(-1)
            if self.stem.cardinalities:
                same = same & (inputs["categorical"][:, None] == categorical[None]).all(-1)
            logits = logits.masked_fill(same, float("-inf"))
        weights = torch.softmax(logits, dim=-1)  # [B, M]
        if self.num_classes is None:
            return weights @ labels.to(weights.dtype), None
        votes = weights @ nn.functional.one_hot(labels, self.num_classes).to(weights.dtype)
        return votes.clamp_min(MIN_PROB).log(), None


@MODELS.register(
    "modernnca",
    paper="Revisiting Nearest Neighbor for Tabular Data: A Deep Tabular Baseline Two Decades Later",
    arxiv="2407.03257",
    summary="ModernNCA / TabR-style retrieval: soft nearest-neighbour vote of training rows.",
    test_kwargs={
        "num_features": 3,
        "cardinalities": [4],
        "num_classes": 2,
        "dim": 8,
        "depth": 1,
        "candidates": {
            "numerical": [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [-1.5, 0.5, 0.0], [0.0, 2.0, 1.0]],
            "categorical": [[0], [3], [1], [2]],
            "targets": [0, 1, 1, 0],
        },
    },
    meta={"kinds": ("classify", "regress")},
)
def modernnca(
    *,
    num_features: int,
    cardinalities: list[int] | None = None,
    num_classes: int | None = None,
    num_outputs: int | None = None,
    dim: int = 64,
    depth: int = 1,
    mixer: Any = "none",
    channel_mixer: Any = "none",
    norm: Any = "none",
    temperature: float = 1.0,
    sample_rate: float = 0.5,
    candidates: dict[str, Any] | None = None,
) -> ModernNCA:
    """ModernNCA (arXiv:2407.03257) for a table task: ``dim`` the embedding width, ``depth`` MLP blocks.

    It mixes no tokens: ``mixer``, ``channel_mixer`` and ``norm`` must stay ``"none"``. A regression
    task (``num_outputs``) must have one output. The model needs its candidates before it
    predicts: ``candidates`` here (a dict of lists or tensors, see :meth:`ModernNCA.set_candidates`)
    or :meth:`ModernNCA.set_candidates` with the task's training split.
    """
    for name, value in (("mixer", mixer), ("channel_mixer", channel_mixer), ("norm", norm)):
        check(value == "none", "modernnca", name, value, "'none': ModernNCA is an MLP embedding and a vote")
    check(num_outputs in (None, 1), "modernnca", "num_outputs", num_outputs, "expected 1")
    return ModernNCA(
        num_features,
        dim,
        cardinalities=cardinalities,
        num_classes=num_classes,
        depth=depth,
        temperature=temperature,
        sample_rate=sample_rate,
        candidates=candidates,
    )
