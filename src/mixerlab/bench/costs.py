"""Cost measurements of a model: parameters, FLOPs per example and token, state size, training memory.

Every measurement runs the model on a batch of its task's own inputs (tokens, images, tables,
series), never on stand-in int64 zeros.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass, so they
cover what PyTorch counts (matrix products, convolutions, attention kernels) and not elementwise
work; they are reported per token of the forward pass. Peak memory is measured by the device
allocator on CUDA; on a CPU, where PyTorch keeps no allocator statistics, it is an estimate from
first principles of one training step: parameters + gradients + AdamW's two moments + every
tensor saved for the backward pass (counted through ``saved_tensors_hooks``, each storage once).
"""

from __future__ import annotations

import platform
from typing import Any

import torch
from torch import nn

from mixerlab.models.model import tokens_per_example


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def forward_flops(model: nn.Module, inputs: Any) -> float:
    """FLOPs of one forward pass on ``inputs`` (as counted by FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


def flops_per_token(model: nn.Module, seq_len: int, *, batch_size: int = 1, device: str = "cpu") -> float:
    """Forward FLOPs per token for ``tokens: [batch_size, seq_len]`` of a token model."""
    tokens = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)
    return forward_flops(model, tokens) / (batch_size * seq_len)


def sequence_length(model: nn.Module, inputs: Any) -> int:
    """Tokens per example that the backbone mixes (see :func:`~mixerlab.models.model.tokens_per_example`)."""
    return tokens_per_example(model, inputs)


def training_memory_bytes(model: nn.Module, inputs: Any) -> int:
    """Bytes of one training step: weights, grads, AdamW moments and activations saved for backward."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        return _cuda_peak(model, inputs)
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            storages[id(t)] = t.numel() * t.element_size()
        return t

    params = {id(p): p for p in model.parameters()}.values()
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, _ = model(inputs)
    del logits
    activations = sum(n for ptr, n in storages.items() if ptr not in param_ptrs)
    return 4 * weight_bytes + activations


def _cuda_peak(model: nn.Module, inputs: Any) -> int:  # pragma: no cover - needs a GPU
    device = next(model.parameters()).device
    torch.cuda.reset_peak_memory_stats(device)
    logits, _ = model(inputs)
    logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated(device)


def measure_costs(model: nn.Module, *, task: Any, inputs: Any, device) -> dict:
    """The static costs of ``model`` on a batch of the task's own ``inputs`` (any kind).

    FLOPs are per example and per token (of the sequence the backbone mixes); the state size is
    at the training length and at the longest evaluation length (they differ for train-short /
    test-long probes).
    """
    batch = _batch_size(inputs)
    seq_len = sequence_length(model, inputs)
    eval_len = max(task.eval_seq_lens) if task.kind == "next_token" else seq_len
    flops = forward_flops(model, inputs) / batch
    return {
        "params": count_parameters(model),
        "flops_per_example": flops,
        "flops_per_token": flops / seq_len,
        "state_size": int(model.state_size(seq_len)),
        "state_size_eval": int(model.state_size(eval_len)),
        "peak_memory_mb": training_memory_bytes(model, inputs) / 2**20,
    }


def _batch_size(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    return next(iter(inputs.values())).shape[0]


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions and device recorded with every result."""
    import mixerlab

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "mixerlab": mixerlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
    }
