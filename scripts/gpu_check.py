"""The mixing contract, the models and the GPU figures on a CUDA device, in one go (< 8 minutes
on one GPU); every check here also runs on the CPU.

1. For every registered token mixer, in float64 on the device: the non-causal form (native or the
   bidirectional wrapper) equals the same module on the CPU, and a packed batch equals each
   document alone; every named model trains one step; the trainer runs one epoch of an image, a
   table and a series task on the device.
2. The device-parametrised test suites, their ``device`` items only (``-k cuda``): the token-mixer
   contract in float64, bfloat16 training, ``lstm`` in train and eval mode, and
   flash-linear-attention's kernels against the reference (tests/ops/test_backends_fla.py and
   tests/ops/test_backends_fla_recurrent.py).
3. benchmarks/gpu.py: every mixer's training throughput beside the installed peers and the bf16
   matmul rate, within ``--bench-budget`` seconds.

Writes a Markdown section for BENCHMARKS.md (``--out``: the benchmark table and the check
results), prints one line per failure and a summary; exits 1 on any failure.

    python scripts/gpu_check.py --device cuda --out gpu_check.md
    python scripts/gpu_check.py --device cpu --tiny --tests-k "cpu and gla"   # the script itself
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent
SUITES = (
    "tests/layers/token_mixers/test_contract.py",
    "tests/layers/token_mixers/test_low_precision.py",
    "tests/layers/token_mixers/test_rnn.py",
    "tests/ops/test_backends_fla.py",
    "tests/ops/test_backends_fla_recurrent.py",
    "tests/ops/test_backends_fla_attention.py",
    "tests/ops/test_backends_mamba_ssm.py",
)


def test_suites(selection: str, timeout_s: float, failures: list[str]) -> str:
    """Run the device items of the test suites in a subprocess; returns pytest's summary line."""
    if importlib.util.find_spec("pytest") is None:
        return "pytest is not installed here: the test suites were not run"
    command = [sys.executable, "-m", "pytest", "-rfE", "-p", "no:cacheprovider", "-k", selection, *SUITES]
    if importlib.util.find_spec("xdist") is not None:
        command += ["-n", str(min(8, os.cpu_count() or 1))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        failures.append(f"tests: not finished within {timeout_s:.0f} s")
        return f"not finished within {timeout_s:.0f} s"
    lines = done.stdout.strip().splitlines()
    for line in lines:
        if line.startswith(("FAILED", "ERROR")):
            failures.append(f"tests: {line}")
    if done.returncode not in (0, 5):  # 5: nothing selected
        failures.append(f"tests: pytest exited {done.returncode}")
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
    return lines[-1] if lines else done.stderr.strip()[-300:]


def benchmark(device: torch.device, tiny: bool, budget_s: float) -> str:
    """benchmarks/gpu.py's Markdown section (imported by path: benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("mixerlab_benchmark_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    sizes = module.TINY if tiny else module.Sizes()
    result = module.run(device, sizes, budget_s, None)
    command = f"python benchmarks/gpu.py --device {device.type}" + (" --tiny" if tiny else "")
    return module.markdown(result, device, sizes, command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny benchmark sizes (checks the script)")
    parser.add_argument("--tests-k", default="", help="pytest -k selection (default: the device type)")
    parser.add_argument("--tests-timeout", type=float, default=150.0, help="seconds for the test suites")
    parser.add_argument("--bench-budget", type=float, default=240.0, help="seconds for the benchmark")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip: checks,tests,bench")
    parser.add_argument("--out", default="gpu_check.md", help="the Markdown section is written here")
    args = parser.parse_args()
    device = torch.device(args.device)
    skip = set(args.skip.split(","))
    failures: list[str] = []
    started = time.perf_counter()
    summary: list[str] = []
    section = ""

    def write() -> str:
        """The section so far, on disk after every stage: a run cut off keeps the stages before."""
        text = section + "\n" + "".join(f"- {line}\n" for line in summary)
        text += f"- whole check: {time.perf_counter() - started:.0f} s, {len(failures)} failure(s)\n"
        text += "".join(f"- FAIL {line}\n" for line in failures)
        Path(args.out).write_text(text)
        return text

    if "checks" not in skip:
        mixer_checks(device, failures)
        model_checks(device, failures)
        checked = len(mixerlab.list_token_mixers()) + len(mixerlab.list_models()) + 3
        summary.append(f"mixer and model checks: {checked - len(failures)} passed, {len(failures)} failed")
        print(summary[-1], f"({time.perf_counter() - started:.0f} s)", flush=True)
        write()
    if "tests" not in skip:
        tests = test_suites(args.tests_k or device.type, args.tests_timeout, failures)
        summary.append(f"test suites (-k {args.tests_k or device.type!r}): {tests}")
        print(summary[-1], f"({time.perf_counter() - started:.0f} s)", flush=True)
        write()
    if "bench" not in skip:
        section = benchmark(device, args.tiny, args.bench_budget)
        print(section, flush=True)
    for line in failures:
        print("FAIL", line)
    print(write())
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
