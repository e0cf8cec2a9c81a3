"""The mixing contract and the models on a CUDA device: every check here also runs on the CPU.

For every registered token mixer, in float64 on the device: the non-causal form (native or the
bidirectional wrapper) equals the same module on the CPU, and a packed batch equals each document
alone; every named model trains one step; the trainer runs one epoch of an image, a table and a
series task on the device. Prints one line per failure and a summary; exits 1 on any failure.

    python scripts/gpu_check.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
import traceback

import torch

import mixerlab
from mixerlab.layers.mixing import make_mixer
from mixerlab.registry import MODELS, TOKEN_MIXERS


def mixer_checks(device: torch.device, failures: list[str]) -> None:
    for name in mixerlab.list_token_mixers():
        kwargs = dict(TOKEN_MIXERS.entry(name).test_kwargs)
        dim = kwargs.pop("dim")
        try:
            torch.manual_seed(0)
            cpu = make_mixer({"name": name, **kwargs}, dim=dim, mixing="noncausal").double()
            gpu = copy.deepcopy(cpu).to(device)
            # An image mixer sized by its grid reads exactly that many tokens.
            tokens = getattr(cpu, "num_tokens", None) or 17
            x = torch.randn(2, tokens, dim, dtype=torch.float64)
            torch.testing.assert_close(gpu(x.to(device))[0].cpu(), cpu(x)[0], rtol=1e-9, atol=1e-10)
            if not getattr(type(cpu), "causal", True):
                continue  # image mixers are non-causal only: no packed documents
            torch.manual_seed(0)
            causal = mixerlab.create_token_mixer(name, dim=dim, **kwargs).double().to(device)
            lengths = [5, 11, 7]
            row = torch.randn(1, sum(lengths), dim, dtype=torch.float64, device=device)
            cu = torch.tensor([0, 5, 16, 23], device=device)
            y, _ = causal.forward_packed(row, cu)
            alone = torch.cat([causal(part)[0] for part in row.split(lengths, dim=1)], dim=1)
            torch.testing.assert_close(y, alone, rtol=1e-9, atol=1e-10)
        except Exception:  # report every mixer, not only the first failure
            failures.append(f"mixer {name}: {traceback.format_exc(limit=2).splitlines()[-1]}")


def model_checks(device: torch.device, failures: list[str]) -> None:
    from mixerlab.train import RunConfig, Trainer, from_dict

    for name in mixerlab.list_models():
        try:
            model = mixerlab.create_model(name, **MODELS.entry(name).test_kwargs).to(device)
            inputs = _inputs(model, device)
            pred, _ = model(inputs)
            pred.float().square().mean().backward()
        except Exception:
            failures.append(f"model {name}: {traceback.format_exc(limit=2).splitlines()[-1]}")
    for task in ("digits", "synthetic_table", "elnino"):
        try:
            config = from_dict(
                RunConfig,
                {
                    "task": {"name": task},
                    "model": {"name": _model_for(task), "dim": 16, "depth": 1, "mixer": "gla"},
                    "train": {"epochs": 1, "device": str(device)},
                },
            )
            result = Trainer(config, progress=False).fit()
            print(f"train {task} on {device}: {result.metrics.name}={result.metrics.value:.4f}")
        except Exception:
            failures.append(f"train {task}: {traceback.format_exc(limit=2).splitlines()[-1]}")


def _model_for(task: str) -> str:
    return {"digits": "image_classifier", "elnino": "forecaster"}.get(task, "tabular")


def _inputs(model, device):
    stem = model.stem
    kind = type(stem).__name__
    if kind == "TokenEmbedding":
        return torch.randint(0, stem.vocab_size, (2, 9), device=device)
    if kind == "PatchEmbedding":
        return torch.rand(2, stem.in_chans, stem.image_size, stem.image_size, device=device)
    if kind == "FeatureTokenizer":
        cats = torch.stack([torch.randint(0, c, (2,)) for c in stem.cardinalities], 1).to(device)
        return {"numerical": torch.randn(2, stem.num_features, device=device), "categorical": cats}
    return torch.randn(2, stem.context, stem.num_channels, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    device = torch.device(parser.parse_args().device)
    failures: list[str] = []
    mixer_checks(device, failures)
    model_checks(device, failures)
    for line in failures:
        print("FAIL", line)
    checked = len(mixerlab.list_token_mixers()) + len(mixerlab.list_models()) + 3
    print(f"{checked - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
