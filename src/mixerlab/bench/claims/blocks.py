"""Claims on norms and channel mixers: DyT, KAN, NAC/NALU and a Switch mixture of experts.

- Zhu et al., "Transformers without Normalization" (arXiv:2503.10622): DyT trains within a small
  margin of LayerNorm on the same model.
- Liu et al., "KAN: Kolmogorov-Arnold Networks" (arXiv:2404.19756): a KAN fits a symbolic target
  with fewer parameters than an MLP at equal error.
- Trask et al., "Neural Arithmetic Logic Units" (arXiv:1808.00508): NAC (addition) and NALU
  (multiplication) extrapolate outside the training range where an MLP fails.
- Fedus et al., "Switch Transformers" (arXiv:2101.03961): at equal active parameters and equal
  training compute, a mixture of experts beats the dense model.

The channel-mixer claims train the registered channel mixers directly on 2-D inputs (``dim=2``,
output coordinate 0 is the prediction): the claims are about the blocks, so nothing else is in
the way. Shapes: inputs ``[N, 2]``, targets ``[N]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import mixerlab
from mixerlab.bench.claims.base import (
    Claim,
    Measurement,
    Plot,
    Threshold,
    one_thread,
    register_claim,
    scaled,
    token_loss,
    train_lm,
    train_steps,
)
from mixerlab.tasks.base import generator

# ---------------------------------------------------------------------------------------------
# DyT vs LayerNorm

NORMS_SETTINGS = {
    "seq_len": 64,
    "dim": 64,
    "depth": 2,
    "mixer": {"name": "attention", "num_heads": 4},
    "norms": ["layernorm", "dyt"],
    "steps": 600,
    "batch_size": 32,
    "lr": 3e-3,
    "max_test_chars": 16384,
}


def measure_dyt(settings: dict[str, Any], seed: int, scale: float) -> Measurement:
    """Zhu et al. (arXiv:2503.10622): held-out loss of the same char-LM with LayerNorm and with DyT."""
    s = settings
    steps = scaled(s["steps"], scale)
    task = {"seq_len": s["seq_len"], "max_test_chars": scaled(s["max_test_chars"], scale, s["seq_len"])}
    eval_data = mixerlab.create_task("char_lm", num_train=1, **task).eval_data(seed)[0]
    losses: dict[str, float] = {}
    curves: dict[str, dict[Any, float]] = {}
    for norm in s["norms"]:
        model_options = {"dim": s["dim"], "depth": s["depth"], "mixer": s["mixer"], "norm": norm}
        trained = train_lm(
            "char_lm", task, model_options, steps=steps, batch_size=s["batch_size"], lr=s["lr"], seed=seed
        )
        losses[norm] = token_loss(trained.model, eval_data)
        every = max(1, len(trained.losses) // 20)
        curves[f"{norm} (training loss)"] = {
            i + 1: trained.losses[i] for i in range(0, len(trained.losses), every)
        }
    ln, dyt = losses["layernorm"], losses["dyt"]
    figures = {"layernorm_loss": ln, "dyt_loss": dyt, "relative_gap": (dyt - ln) / ln}
    return Measurement(figures, curves, steps=steps * len(s["norms"]))


register_claim(
    Claim(
        name="dyt_matches_layernorm",
        paper="Transformers without Normalization",
        arxiv="2503.10622",
        text=(
            "Replacing every LayerNorm of a Transformer by DyT, tanh(alpha x) with an affine map, trains "
            "to within 5% of the LayerNorm model's held-out loss, same model, same budget."
        ),
        thresholds=(Threshold("relative_gap", "<=", 0.05),),
        settings=NORMS_SETTINGS,
        measure=measure_dyt,
        plot=Plot("step", "training loss (nats per character)"),
        # Not in --quick: two 600-step char-LMs take ~100 s on a busy 2-core machine.
    )
)

# ---------------------------------------------------------------------------------------------
# Shared: fit a channel mixer (dim=2) to a function of two inputs


def fit_channel_mixer(
    module: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int | None = None,
    seed: int = 0,
) -> list[float]:
    """Fit output coordinate 0 of ``module`` (``[N, 2] -> [N, 2]``) to ``y`` by mean squared error.

    ``batch_size=None`` is full-batch; otherwise batches are drawn from a seeded generator.
    """
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> Tensor:
        if batch_size is None:
            xb, yb = x_train, y_train
        else:
            index = torch.randint(len(x_train), (batch_size,), generator=g)
            xb, yb = x_train[index], y_train[index]
        return ((module(xb)[:, 0] - yb) ** 2).mean()

    with one_thread():
        return train_steps(module, loss_fn, steps=steps, lr=lr, grad_clip=None)


@torch.no_grad()
def predict(module: nn.Module, x: Tensor) -> Tensor:
    module.eval()
    return module(x)[:, 0]


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# KAN vs MLP on a symbolic target

KAN_SETTINGS = {
    # The paper's running example (Figure 2.1 / Section 3.1): f(x, y) = exp(sin(pi x) + y^2).
    "target": "exp(sin(pi x) + y^2)",
    "kan_hidden": [1, 2, 4, 8],
    "mlp_hidden": [4, 8, 16, 32, 64, 128],
    "num_train": 1024,
    "num_test": 1024,
    "steps": 2000,
    "lr": 1e-2,
    # The error both must reach: test RMSE as a fraction of the target's standard deviation.
    "target_relative_rmse": 0.05,
}


def symbolic_target(x: Tensor) -> Tensor:
    return torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)


def measure_kan(settings: dict[str, Any], seed: int, scale: float) -> Measurement:
    """Liu et al. (arXiv:2404.19756): the fewest parameters with which a KAN / an MLP reach the target.

    Both are the registered channel mixers at ``dim=2`` (``kan``: B-spline layers 2 -> H -> 2,
    grid 5, order 3; ``mlp``: 2 -> H -> 2 with GELU) trained full-batch with Adam for the same
    number of steps, on inputs uniform in ``[-1, 1]^2`` (the KAN grid's range).
    """
    s = settings
    steps = scaled(s["steps"], scale)
    g = generator(seed, "claims", "kan")
    x_train = torch.rand(scaled(s["num_train"], scale, 32), 2, generator=g) * 2 - 1
    x_test = torch.rand(scaled(s["num_test"], scale, 32), 2, generator=g) * 2 - 1
    y_train, y_test = symbolic_target(x_train), symbolic_target(x_test)
    scale_y = float(y_test.std())
    series: dict[str, dict[Any, float]] = {}
    smallest: dict[str, float] = {}
    for family, widths in [("kan", s["kan_hidden"]), ("mlp", s["mlp_hidden"])]:
        points: dict[Any, float] = {}
        for hidden in widths:
            torch.manual_seed(seed)
            module = mixerlab.create_channel_mixer(family, dim=2, hidden_dim=hidden)
            fit_channel_mixer(module, x_train, y_train, steps=steps, lr=s["lr"])
            rmse = float(((predict(module, x_test) - y_test) ** 2).mean().sqrt()) / scale_y
            points[param_count(module)] = rmse
        series[family] = points
        reached = [p for p, err in points.items() if err <= s["target_relative_rmse"]]
        smallest[family] = float(min(reached)) if reached else math.inf
    kan, mlp = smallest["kan"], smallest["mlp"]
    # inf / inf (neither reaches the target) is NaN, which fails the claim, as it should.
    ratio = kan / mlp if math.isfinite(mlp) else (0.0 if math.isfinite(kan) else math.nan)
    figures = {"kan_params_at_target": kan, "mlp_params_at_target": mlp, "param_ratio": ratio}
    return Measurement(figures, series, steps=steps * (len(s["kan_hidden"]) + len(s["mlp_hidden"])))


register_claim(
    Claim(
        name="kan_parameter_efficiency",
        paper="KAN: Kolmogorov-Arnold Networks",
        arxiv="2404.19756",
        text=(
            "A KAN fits the symbolic target exp(sin(pi x) + y^2) to 5% relative test RMSE with fewer "
            "parameters than the smallest MLP that reaches the same error."
        ),
        thresholds=(Threshold("param_ratio", "<", 1.0),),
        settings=KAN_SETTINGS,
        measure=measure_kan,
        plot=Plot("parameters", "test RMSE / std(target)", log_x=True, log_y=True),
        quick=True,
        kind="regress",
    )
)

# ---------------------------------------------------------------------------------------------
# NAC / NALU extrapolation

ARITHMETIC_SETTINGS = {
    # Train on operands in [0.1, 1), test inside that range and on [1, 5) (outside it).
    "train_range": [0.1, 1.0],
    "test_range": [1.0, 5.0],
    "mlp_hidden": 64,
    "num_train": 1024,
    "num_test": 1024,
    "steps": 3000,
    "batch_size": 64,
    "lr": 1e-2,
}

_OPERATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "add": lambda x: x[:, 0] + x[:, 1],
    "mul": lambda x: x[:, 0] * x[:, 1],
}


def measure_arithmetic(settings: dict[str, Any], seed: int, scale: float) -> Measurement:
    """Trask et al. (arXiv:1808.00508): relative error of NAC (add), NALU (mul) and an MLP out of range.

    The relative error is ``mean |pred - y| / mean |y|`` on operands drawn from ``test_range``;
    the units are the registered ``nac`` / ``nalu`` channel mixers at ``dim=2``, the baseline the
    ``mlp`` channel mixer (2 -> 64 -> 2, GELU). Operands are positive (NALU's multiplicative path
    is ``exp(W log|x|)``, which cannot produce a sign).
    """
    s = settings
    steps = scaled(s["steps"], scale)
    g = generator(seed, "claims", "arithmetic")
    lo, hi = s["train_range"]
    tlo, thi = s["test_range"]
    n_train, n_test = scaled(s["num_train"], scale, 32), scaled(s["num_test"], scale, 32)
    x_train = lo + (hi - lo) * torch.rand(n_train, 2, generator=g)
    x_inter = lo + (hi - lo) * torch.rand(n_test, 2, generator=g)
    x_extra = tlo + (thi - tlo) * torch.rand(n_test, 2, generator=g)
    figures: dict[str, float] = {}
    series: dict[str, dict[Any, float]] = {}
    for op, unit in [("add", "nac"), ("mul", "nalu")]:
        fn = _OPERATIONS[op]
        for family, options in [(unit, {}), ("mlp", {"hidden_dim": s["mlp_hidden"]})]:
            torch.manual_seed(seed)
            module = mixerlab.create_channel_mixer(family, dim=2, **options)
            fit_channel_mixer(
                module, x_train, fn(x_train), steps=steps, lr=s["lr"], batch_size=s["batch_size"], seed=seed
            )
            errors = {}
            for where, x in [("inside", x_inter), ("outside", x_extra)]:
                y = fn(x)
                errors[where] = float((predict(module, x) - y).abs().mean() / y.abs().mean())
            label = f"{family} on {op}"
            series[label] = errors
            tag = "unit" if family != "mlp" else "mlp"
            figures[f"{tag}_{op}_extrapolation_error"] = errors["outside"]
            figures[f"{tag}_{op}_interpolation_error"] = errors["inside"]
    return Measurement(figures, series, steps=4 * steps)


register_claim(
    Claim(
        name="nalu_extrapolation",
        paper="Neural Arithmetic Logic Units",
        arxiv="1808.00508",
        text=(
            "Trained on operands in [0.1, 1), NAC (addition) and NALU (multiplication) stay within 5% "
            "relative error on operands in [1, 5), where an MLP is off by 20% or more."
        ),
        thresholds=(
            Threshold("unit_add_extrapolation_error", "<=", 0.05),
            Threshold("unit_mul_extrapolation_error", "<=", 0.05),
            Threshold("mlp_add_extrapolation_error", ">=", 0.2),
            Threshold("mlp_mul_extrapolation_error", ">=", 0.2),
        ),
        settings=ARITHMETIC_SETTINGS,
        measure=measure_arithmetic,
        plot=Plot("operands", "relative error (mean |error| / mean |y|)", log_y=True, categorical_x=True),
        quick=True,
        kind="regress",
    )
)

# ---------------------------------------------------------------------------------------------
# Switch MoE vs dense at equal active parameters

MOE_SETTINGS = {
    "seq_len": 64,
    "dim": 64,
    "depth": 2,
    "mixer": {"name": "attention", "num_heads": 4},
    "hidden_dim": 128,
    "num_experts": 8,
    "steps": 800,
    "batch_size": 32,
    "lr": 3e-3,
    "max_test_chars": 16384,
}


def measure_moe(settings: dict[str, Any], seed: int, scale: float) -> Measurement:
    """Fedus et al. (arXiv:2101.03961): a top-1 MoE of SwiGLU experts vs one SwiGLU of the same size.

    Each token passes through exactly one expert of the same shape as the dense channel mixer, so
    active parameters and training FLOPs per token are equal (the router's ``D x E`` matmul aside);
    both see the same tokens for the same number of steps.
    """
    s = settings
    steps = scaled(s["steps"], scale)
    task = {"seq_len": s["seq_len"], "max_test_chars": scaled(s["max_test_chars"], scale, s["seq_len"])}
    eval_data = mixerlab.create_task("char_lm", num_train=1, **task).eval_data(seed)[0]
    channel_mixers = {
        "dense": {"name": "swiglu", "hidden_dim": s["hidden_dim"]},
        "moe": {
            "name": "moe",
            "hidden_dim": s["hidden_dim"],
            "num_experts": s["num_experts"],
            "top_k": 1,
            "expert": "swiglu",
        },
    }
    figures: dict[str, float] = {}
    curves: dict[str, dict[Any, float]] = {}
    extra: dict[str, Any] = {}
    for label, channel_mixer in channel_mixers.items():
        model_options = {
            "dim": s["dim"],
            "depth": s["depth"],
            "mixer": s["mixer"],
            "channel_mixer": channel_mixer,
        }
        trained = train_lm(
            "char_lm", task, model_options, steps=steps, batch_size=s["batch_size"], lr=s["lr"], seed=seed
        )
        figures[f"{label}_loss"] = token_loss(trained.model, eval_data)
        extra[f"{label}_params"] = trained.params
        every = max(1, len(trained.losses) // 20)
        curves[f"{label} (training loss)"] = {
            i + 1: trained.losses[i] for i in range(0, len(trained.losses), every)
        }
    figures["loss_ratio"] = figures["moe_loss"] / figures["dense_loss"]
    return Measurement(figures, curves, extra, steps=2 * steps)


register_claim(
    Claim(
        name="moe_beats_dense",
        paper="Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
        arxiv="2101.03961",
        text=(
            "At equal active parameters and equal training compute, a top-1 mixture of 8 experts "
            "reaches a held-out loss at least 1% below the dense model's."
        ),
        thresholds=(Threshold("loss_ratio", "<=", 0.99),),
        settings=MOE_SETTINGS,
        measure=measure_moe,
        plot=Plot("step", "training loss (nats per character)"),
    )
)
