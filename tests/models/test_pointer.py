"""pointer: outputs are distributions over input positions (Pointer Networks, arXiv:1506.03134)."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.pointer import PointerNetwork
from mixerlab.registry import MODELS
from mixerlab.train import train
from mixerlab.train.config import RunConfig, from_dict

# No rotary positions: the encoder then sees a set, so it is permutation-equivariant.
SET_ATTENTION = {"name": "attention", "num_heads": 2, "rotary_base": None}


def _model(**kw) -> PointerNetwork:
    torch.manual_seed(0)
    return mixerlab.create_model("pointer", in_features=1, dim=16, depth=1, mixer=SET_ATTENTION, **kw)


def test_pointer_is_registered_with_its_paper():
    assert MODELS.entry("pointer").arxiv in PointerNetwork.__doc__.splitlines()[0]


def test_logits_point_at_the_inputs_whatever_their_number():
    model = _model()
    for n in (5, 9):
        logits, _ = model(torch.rand(2, n, 1))
        assert logits.shape == (2, n, n)
    hull = mixerlab.create_model("pointer", in_features=2, end_token=True, dim=16, depth=1)
    assert hull(torch.rand(2, 7, 2))[0].shape == (2, 8, 8)  # plus the end token


def test_permuting_the_input_permutes_the_pointers():
    model = _model().double()
    x = torch.rand(3, 7, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(2))
    logits, _ = model(x)
    logits_p, _ = model(x[:, perm])
    # Input j of the permuted set is input perm[j] of the original.
    torch.testing.assert_close(logits_p, logits[:, :, perm])
    assert torch.equal(perm[logits_p.argmax(-1)], logits.argmax(-1))


def test_teacher_forcing_sees_only_earlier_pointers_and_masks_visited_positions():
    model = _model().double()
    x = torch.rand(2, 6, 1, dtype=torch.float64)
    teacher = torch.stack([torch.randperm(6) for _ in range(2)])
    logits, _ = model({"points": x, "teacher": teacher})
    changed = teacher.clone()
    changed[:, 3:] = changed[:, 3:].flip(1)
    logits2, _ = model({"points": x, "teacher": changed})
    torch.testing.assert_close(logits[:, :4], logits2[:, :4])  # step i reads teacher[:i] only
    visited = logits[:, 1:].gather(2, teacher[:, :1, None].expand(-1, 5, 1))
    assert (visited < -1e3).all()  # the first pointer is never chosen again


def test_pointer_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="in_features"):
        mixerlab.create_model("pointer", dim=16)
    with pytest.raises(ConfigError, match="points"):
        _model()(torch.rand(2, 5, 3))


def test_a_tiny_pointer_network_learns_to_sort_five_numbers():
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "sort", "options": {"num_points": 5, "num_train": 2048, "num_test": 256}},
            "model": {"name": "pointer", "dim": 32, "depth": 1, "mixer": SET_ATTENTION},
            "train": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "seed": 0},
        },
    )
    _, result = train(config, progress=False)
    assert result.metrics.value > 0.8, result.metrics  # chance is 1/5 per pointer (greedy decoding)
