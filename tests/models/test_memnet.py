"""memnet: multi-hop attention over sentence memories (End-To-End Memory Networks, arXiv:1503.08895)."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.memnet import EndToEndMemoryNetwork, position_encoding
from mixerlab.registry import MODELS
from mixerlab.train import train
from mixerlab.train.config import RunConfig, from_dict


def _story(task_seed: int = 0, n: int = 5):
    task = mixerlab.create_task("babi", num_entities=3, num_places=4, num_sentences=6, num_train=n)
    return task, task.train_data(task_seed).inputs


def test_memnet_is_registered_with_its_paper():
    entry = MODELS.entry("memnet")
    assert entry.arxiv == "1503.08895" and entry.arxiv in EndToEndMemoryNetwork.__doc__.splitlines()[0]


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
def test_hops_change_the_computation_with_the_same_weights(tying):
    task, inputs = _story()
    torch.manual_seed(0)
    two = EndToEndMemoryNetwork(task.vocab_size, 4, dim=8, hops=2, tying=tying, max_memories=8).double()
    one = EndToEndMemoryNetwork(task.vocab_size, 4, dim=8, hops=1, tying=tying, max_memories=8).double()
    # Give the one-hop model the two-hop model's weights for everything it has.
    own = one.state_dict()
    one.load_state_dict(
        {k: v[: own[k].shape[0]] if k == "temporal" else v for k, v in two.state_dict().items() if k in own}
    )
    logits1, attn1 = one.read(inputs)
    logits2, attn2 = two.read(inputs)
    assert attn1.shape == (5, 1, 6) and attn2.shape == (5, 2, 6)  # one attention round per hop
    torch.testing.assert_close(attn1[:, 0], attn2[:, 0])  # the first hop is the same computation
    assert not torch.allclose(logits1, logits2)


def test_attention_over_memories_sums_to_one_and_skips_empty_sentences():
    task, inputs = _story()
    inputs = {k: v.clone() for k, v in inputs.items()}
    inputs["story"][:, 2] = 0  # an empty sentence is no memory
    model = mixerlab.create_model("memnet", **task.model_io(), dim=8, depth=3)
    _, attn = model.read(inputs)
    torch.testing.assert_close(attn.sum(-1), torch.ones(5, 3))
    assert (attn[:, :, 2] == 0).all() and (attn >= 0).all()


def test_position_encoding_makes_word_order_matter():
    enc = position_encoding(4, 6, dtype=torch.float64)
    assert enc.shape == (4, 6)
    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J), written out for j = 1, k = 1.
    assert enc[0, 0].item() == pytest.approx((1 - 1 / 4) - (1 / 6) * (1 - 2 / 4))
    assert not torch.allclose(enc[0], enc[1])


def test_language_model_form_reads_tokens_as_one_word_memories():
    model = mixerlab.create_model("memnet", vocab_size=9, num_classes=9, dim=8, depth=2, max_memories=16)
    tokens = torch.randint(0, 9, (3, 7), generator=torch.Generator().manual_seed(0))
    logits, attn = model.read(tokens)
    assert logits.shape == (3, 9) and attn.shape == (3, 2, 7)


def test_memnet_rejects_what_it_does_not_have():
    with pytest.raises(ConfigError, match="mixer"):
        mixerlab.create_model("memnet", vocab_size=9, num_classes=3, mixer="gla")
    with pytest.raises(ConfigError, match="tying"):
        mixerlab.create_model("memnet", vocab_size=9, num_classes=3, tying="none")
    model = mixerlab.create_model("memnet", vocab_size=9, num_classes=3, max_memories=4)
    with pytest.raises(ConfigError, match="sentences"):
        model(torch.ones(1, 5, dtype=torch.long))


def test_a_tiny_memnet_learns_single_supporting_facts():
    config = from_dict(
        RunConfig,
        {
            "task": {
                "name": "babi",
                "options": {
                    "num_entities": 3,
                    "num_places": 4,
                    "num_sentences": 5,
                    "num_train": 1024,
                    "num_test": 256,
                },
            },
            "model": {"name": "memnet", "dim": 24, "depth": 2},
            "train": {"epochs": 4, "batch_size": 32, "lr": 2e-2, "seed": 0},
        },
    )
    _, result = train(config, progress=False)
    assert result.metrics.value > 0.6, result.metrics  # chance is 1/4
