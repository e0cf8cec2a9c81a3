"""Any mixerlab model as a Hugging Face ``transformers`` model (extra ``mixerlab[hf]``).

Importing this module registers :class:`MixerlabConfig` (``model_type="mixerlab"``) with
``AutoConfig`` and one model class per head kind with its auto class:

- :class:`MixerlabForCausalLM` (``AutoModelForCausalLM``): logits ``[B, T, V]``, ``generate()``;
- :class:`MixerlabForSequenceClassification`: token stem, pooled class head, logits ``[B, C]``;
- :class:`MixerlabForImageClassification`: ``pixel_values [B, C, H, W]`` -> logits ``[B, C]``.

The mixer is data, not a class: the config holds a registered model's name and its
``create_model`` arguments (``mixer``, ``dim``, ``depth``, the task's ``model_io()`` sizes), so
every registered token mixer, channel mixer and norm works through the same three classes::

    config = MixerlabConfig(model_kwargs={"mixer": "gla", "dim": 64, "depth": 2, "vocab_size": 256})
    lm = MixerlabForCausalLM(config)
    lm.save_pretrained("out")                       # config.json + model.safetensors
    again = AutoModelForCausalLM.from_pretrained("out")

``generate()`` carries mixerlab's recurrent state (``model(x, state=state)``) from step to step,
so each new token costs one step whatever the prompt's length; the state is what every mixer
returns (a key-value cache for attention, a fixed-size state for a recurrent mixer), not a
``transformers`` ``Cache``. Greedy and sampled decoding match :meth:`mixerlab.Model.generate`
(sampling with the same seed: both draw with ``torch.multinomial`` from the global generator;
pass ``top_k=0`` so that ``transformers`` samples from the whole distribution, as mixerlab does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import ImageClassifierOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput

from mixerlab.errors import check
from mixerlab.layers.token_mixers.base import State
from mixerlab.registry import MODELS


class MixerlabConfig(PretrainedConfig):
    """A mixerlab model spec: ``model_name`` (a registered model) and its ``create_model`` arguments.

    ``model_kwargs`` holds what :func:`mixerlab.create_model` takes besides the name (``mixer``,
    ``dim``, ``depth``, ``vocab_size`` / ``num_classes`` / ``image_size`` ...); it must be
    JSON-serialisable, as every mixerlab config is.
    """

    model_type = "mixerlab"

    def __init__(
        self, model_name: str = "lm", model_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs or {})
        if "vocab_size" in self.model_kwargs:
            kwargs.setdefault("vocab_size", self.model_kwargs["vocab_size"])
        super().__init__(**kwargs)


@dataclass
class MixerlabCausalLMOutput(ModelOutput):
    """``logits [B, T, V]``, the loss when labels were given, and the state after the last token."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    state: Any = None


class MixerlabPreTrainedModel(PreTrainedModel):
    """The mixerlab model of ``config`` under ``self.model``; subclasses fix the head kind."""

    config_class = MixerlabConfig
    base_model_prefix = "mixerlab"
    # Options the head kind adds to the spec when the config does not give them.
    head_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: MixerlabConfig) -> None:
        super().__init__(config)
        check(
            config.model_name in MODELS,
            "hf",
            "model_name",
            config.model_name,
            f"a registered model: {MODELS.list()}",
        )
        self.model = MODELS.create(config.model_name, **{**self.head_defaults, **config.model_kwargs})
        # Parameters the model shares (the lm builder's tied embedding and head), declared so that
        # save_pretrained writes each once and from_pretrained ties them again.
        first: dict[int, str] = {}
        tied = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            if id(p) in first:
                tied[name] = first[id(p)]
            first.setdefault(id(p), name)
        self._tied_weights_keys = tied or None
        config.tie_word_embeddings = bool(tied)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # mixerlab initialises every layer when it is built; loaded weights replace them.
        pass

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> MixerlabPreTrainedModel:
        """``transformers``' loader, then the buffers a checkpoint does not hold are computed again.

        ``transformers`` builds the model without storage and fills it from the file; buffers that
        mixerlab computes from a layer's options (``persistent=False``: decay rates, tables) are
        not in the file, so each layer owning one runs its ``reset_parameters`` (the mixerlab
        convention that recomputes them) and gets its loaded weights back.
        """
        model = super().from_pretrained(*args, **kwargs)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for name, module in model.named_modules():
                if not getattr(module, "_non_persistent_buffers_set", None):
                    continue
                check(
                    hasattr(module, "reset_parameters"),
                    "hf",
                    name,
                    type(module).__name__,
                    "a layer with computed buffers recomputes them in reset_parameters()",
                )
                loaded = {k: v.clone() for k, v in module.state_dict().items()}
                module.reset_parameters()
                module.load_state_dict(loaded)
        return model


class MixerlabForCausalLM(MixerlabPreTrainedModel, GenerationMixin):
    """A mixerlab language model (``lm`` head, causal mixing) for ``transformers``' ``generate()``."""

    main_input_name = "input_ids"

    def forward(
        self,
        input_ids: Tensor,
        *,
        state: State | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MixerlabCausalLMOutput:
        """``input_ids [B, T]`` (after ``state``: the tokens that follow it) -> ``logits [B, T, V]``.

        ``labels [B, T]`` (``-100`` ignored) give the next-token loss, shifted inside as in
        ``transformers``. ``attention_mask`` must be all ones: padded prompts are not supported.
        """
        _check_unpadded(attention_mask)
        logits, state = self.model(input_ids, state=state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
        return MixerlabCausalLMOutput(
            loss=loss, logits=logits, state=state if use_cache is not False else None
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: Tensor,
        state: State | None = None,
        attention_mask: Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if state is None:  # the prompt: checked for padding once
            return {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": True}
        # With a state, only the newest token is new: one step of every mixer per generated token.
        return {"input_ids": input_ids[:, -1:], "state": state, "use_cache": True}

    def _update_model_kwargs_for_generation(
        self, outputs: ModelOutput, model_kwargs: dict[str, Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        model_kwargs["state"] = outputs.state
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The state is mixerlab's own (what each mixer returns), not a transformers Cache.
        return False

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.stem

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.head


class MixerlabForSequenceClassification(MixerlabPreTrainedModel):
    """Token stem, a mixerlab backbone and a pooled class head: ``input_ids [B, T] -> [B, C]``."""

    main_input_name = "input_ids"
    head_defaults: ClassVar[dict[str, Any]] = {
        "head": {"name": "classify", "pool": "mean"},
        "tie_embeddings": False,
    }

    def forward(
        self,
        input_ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        _check_unpadded(attention_mask)
        logits, _ = self.model(input_ids)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class MixerlabForImageClassification(MixerlabPreTrainedModel):
    """A mixerlab image classifier: ``pixel_values [B, C, H, W] -> logits [B, num_classes]``."""

    main_input_name = "pixel_values"

    def forward(
        self,
        pixel_values: Tensor,
        *,
        labels: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> ImageClassifierOutput:
        logits, _ = self.model(pixel_values)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


def _check_unpadded(attention_mask: Tensor | None) -> None:
    check(
        attention_mask is None or bool(attention_mask.all()),
        "hf",
        "attention_mask",
        "with zeros",
        "all ones: give prompts of one length (padded batches are not supported here)",
    )


AutoConfig.register(MixerlabConfig.model_type, MixerlabConfig, exist_ok=True)
AutoModelForCausalLM.register(MixerlabConfig, MixerlabForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(MixerlabConfig, MixerlabForSequenceClassification, exist_ok=True)
AutoModelForImageClassification.register(MixerlabConfig, MixerlabForImageClassification, exist_ok=True)

__all__ = [
    "MixerlabConfig",
    "MixerlabForCausalLM",
    "MixerlabForImageClassification",
    "MixerlabForSequenceClassification",
]
