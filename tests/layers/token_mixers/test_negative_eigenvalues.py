"""Negative eigenvalues make parity learnable for DeltaNet (arXiv:2411.12537, the paper's main claim).

A one-layer ``deltanet`` LM is trained to output the running parity of a bit string of length 8.
With ``beta in [0, 1]`` every transition ``I - beta k k^T`` has eigenvalues in ``[0, 1]`` and the
layer cannot flip a stored sign; with ``beta in [0, 2]`` it can reflect (eigenvalue -1), which is
exactly the parity automaton. The short convolution is disabled so that the ``[0, 1]`` model cannot
shortcut through local windows. Over seeds 0-3 (120-200 steps) this gave >= 0.998 vs <= 0.57
last-position accuracy.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mixerlab

LENGTH, STEPS, BATCH = 8, 150, 32


def trained_parity_accuracy(negative: bool, seed: int) -> float:
    torch.manual_seed(seed)
    mixer = {
        "name": "deltanet",
        "num_heads": 1,
        "conv_size": None,
        "chunk_size": 8,
        "allow_negative_eigenvalues": negative,
    }
    model = mixerlab.create_model(
        "lm", vocab_size=2, dim=16, depth=1, mixer=mixer, channel_mixer="identity", tie_embeddings=False
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        bits = torch.randint(0, 2, (BATCH, LENGTH), generator=gen)
        loss = F.cross_entropy(model(bits)[0].reshape(-1, 2), (bits.cumsum(1) % 2).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    bits = torch.randint(0, 2, (512, LENGTH), generator=torch.Generator().manual_seed(1000 + seed))
    with torch.no_grad():
        pred = model(bits)[0][:, -1].argmax(-1)
    return (pred == bits.sum(1) % 2).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_needs_negative_eigenvalues(seed):
    # A dim-16 model gains nothing from threads; one thread keeps this fast on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with_negative = trained_parity_accuracy(True, seed)
        without = trained_parity_accuracy(False, seed)
    finally:
        torch.set_num_threads(threads)
    assert with_negative > 0.95, f"beta in [0, 2] should solve parity, got {with_negative:.3f}"
    assert without < 0.75, f"beta in [0, 1] should stay near chance, got {without:.3f}"
