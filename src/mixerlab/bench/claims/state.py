"""Claims on state tracking and copying: negative eigenvalues for parity, minGRU/minLSTM depth.

- Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues"
  (arXiv:2411.12537): a one-layer DeltaNet learns parity, and extrapolates to longer inputs,
  only when its transition eigenvalues may be negative.
- Feng et al., "Were RNNs All We Needed?" (arXiv:2410.01201): minGRU and minLSTM solve selective
  copying with three layers and not with one (their gates depend on the input only, so a single
  layer cannot condition what it stores on what it stored before).
"""

from __future__ import annotations

from typing import Any

import mixerlab
from mixerlab.bench.claims.base import (
    Claim,
    Measurement,
    Plot,
    Threshold,
    register_claim,
    scaled,
    token_accuracy,
    train_lm,
)

PARITY = {
    "train_len": 8,
    "test_lens": [8, 16, 32],
    "dim": 16,
    "steps": 150,
    "batch_size": 32,
    "lr": 1e-2,
    "num_test": 512,
}


def measure_parity(settings: dict[str, Any], seed: int, scale: float) -> Measurement:
    """Grazzi et al. (arXiv:2411.12537): a one-layer deltanet with beta in [0, 2] vs [0, 1] on parity.

    With ``beta in [0, 1]`` every transition ``I - beta k k^T`` has eigenvalues in ``[0, 1]`` and
    cannot flip a stored sign; with ``beta in [0, 2]`` it can reflect (eigenvalue -1), which is the
    parity automaton. The short convolution is off so that the ``[0, 1]`` model cannot shortcut
    through local windows, and the channel mixer is the identity (the claim is about the mixer).
    Accuracy is read at the last position only (the parity of the whole string), at the training
    length and at 2x and 4x it.
    """
    s = settings
    steps = scaled(s["steps"], scale)
    task = {
        "seq_len": s["train_len"],
        "test_seq_lens": s["test_lens"],
        "num_test": scaled(s["num_test"], scale, 16),
        "labels": "all",
    }
    series: dict[str, dict[Any, float]] = {}
    figures: dict[str, float] = {}
    for negative, label in [(True, "beta in [0, 2] (eigenvalues in [-1, 1])"), (False, "beta in [0, 1]")]:
        mixer = {
            "name": "deltanet",
            "num_heads": 1,
            "conv_size": None,
            "chunk_size": 8,
            "allow_negative_eigenvalues": negative,
        }
        model_options = {
            "dim": s["dim"],
            "depth": 1,
            "mixer": mixer,
            "channel_mixer": "identity",
            "tie_embeddings": False,
        }
        trained = train_lm(
            "parity", task, model_options, steps=steps, batch_size=s["batch_size"], lr=s["lr"], seed=seed
        )
        eval_sets = mixerlab.create_task("parity", num_train=1, **task).eval_data(seed)
        points = {}
        for data in eval_sets:
            last = data.targets.clone()
            last[:, :-1] = -100  # score the parity of the whole string only
            data.targets = last
            points[data.seq_len] = token_accuracy(trained.model, data)[0]
        series[label] = points
        tag = "negative" if negative else "positive"
        figures[f"{tag}_train_len_accuracy"] = points[s["train_len"]]
        figures[f"{tag}_longest_accuracy"] = points[max(s["test_lens"])]
    return Measurement(figures, series, steps=2 * steps)


register_claim(
    Claim(
        name="negative_eigenvalues_parity",
        paper="Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues",
        arxiv="2411.12537",
        text=(
            "With eigenvalues in [-1, 1] a one-layer delta-rule model learns parity and extrapolates to "
            "4x longer inputs; with eigenvalues in [0, 1] it stays near chance."
        ),
        thresholds=(
            Threshold("negative_train_len_accuracy", ">=", 0.95, in_plot=True),
            Threshold("negative_longest_accuracy", ">=", 0.9),
            Threshold("positive_train_len_accuracy", "<=", 0.75, in_plot=True),
        ),
        settings=PARITY,
        measure=measure_parity,
        plot=Plot("test length (trained at 8)", "last-position accuracy", categorical_x=True),
        quick=True,
    )
)

SELECTIVE_COPY = {
    "vocab_size": 8,
    "seq_len": 32,
    "num_tokens": 4,
    "dim": 64,
    "depths": [1, 3],
    "mixers": ["mingru", "minlstm"],
    "steps": 800,
    "batch_size": 32,
    "lr": 3e-3,
    "num_test": 256,
}


def measure_min_rnn_depth(settings: dict[str, Any], seed: int, scale: float) -> Measurement:
    """Feng et al. (arXiv:2410.01201): selective-copy accuracy of minGRU / minLSTM at 1 and 3 layers."""
    s = settings
    steps = scaled(s["steps"], scale)
    task = {
        "vocab_size": s["vocab_size"],
        "seq_len": s["seq_len"],
        "num_tokens": s["num_tokens"],
        "num_test": scaled(s["num_test"], scale, 16),
    }
    eval_data = mixerlab.create_task("selective_copy", num_train=1, **task).eval_data(seed)[0]
    series: dict[str, dict[Any, float]] = {}
    figures: dict[str, float] = {}
    for mixer in s["mixers"]:
        points = {}
        for depth in s["depths"]:
            model_options = {"dim": s["dim"], "depth": depth, "mixer": mixer}
            trained = train_lm(
                "selective_copy",
                task,
                model_options,
                steps=steps,
                batch_size=s["batch_size"],
                lr=s["lr"],
                seed=seed,
            )
            points[depth] = token_accuracy(trained.model, eval_data)[0]
        series[mixer] = points
    shallow, deep = min(s["depths"]), max(s["depths"])
    # The claim is about both cells: the weaker deep model and the stronger shallow one decide it.
    figures[f"min_accuracy_{deep}_layers"] = min(series[m][deep] for m in s["mixers"])
    figures[f"max_accuracy_{shallow}_layer"] = max(series[m][shallow] for m in s["mixers"])
    return Measurement(figures, series, steps=steps * len(s["mixers"]) * len(s["depths"]))


register_claim(
    Claim(
        name="min_rnn_depth_selective_copy",
        paper="Were RNNs All We Needed?",
        arxiv="2410.01201",
        text="minGRU and minLSTM solve selective copying with three layers and not with one.",
        thresholds=(
            Threshold("min_accuracy_3_layers", ">=", 0.9, in_plot=True),
            Threshold("max_accuracy_1_layer", "<", 0.6, in_plot=True),
        ),
        settings=SELECTIVE_COPY,
        measure=measure_min_rnn_depth,
        plot=Plot("layers", "selective-copy accuracy", categorical_x=True),
    )
)
