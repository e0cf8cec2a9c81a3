"""Every registered channel mixer works inside a language model: forward, aux losses, backward."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import CHANNEL_MIXERS


@pytest.mark.parametrize("name", CHANNEL_MIXERS.list())
def test_lm_with_channel_mixer_trains_one_step(name):
    options = {k: v for k, v in CHANNEL_MIXERS.entry(name).test_kwargs.items() if k != "dim"}
    model = mixerlab.create_model(
        "lm", vocab_size=11, dim=16, depth=2, channel_mixer={"name": name, **options}
    ).train()
    tokens = torch.randint(0, 11, (2, 9))
    with collect_aux_losses() as aux:
        logits, _ = model(tokens)
    assert logits.shape == (2, 9, 11)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1))
    loss = loss + aux.total()
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    mixer_grads = [
        p.grad for b in model.backbone.blocks if b.channel_mixer for p in b.channel_mixer.parameters()
    ]
    assert all(g.abs().sum() > 0 for g in mixer_grads), "every channel-mixer parameter must learn"


def test_grkan_lm_default_options():
    model = mixerlab.create_model("lm", vocab_size=11, dim=16, depth=2, channel_mixer="grkan")
    logits, _ = model(torch.randint(0, 11, (2, 5)))
    logits.sum().backward()
    assert model.backbone.blocks[0].channel_mixer.rational1.denominator.grad.abs().sum() > 0
