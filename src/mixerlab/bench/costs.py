"""Cost measurements of a model: parameters, FLOPs per token, state size, training memory.

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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def flops_per_token(model: nn.Module, seq_len: int, *, batch_size: int = 1, device: str = "cpu") -> float:
    """Forward FLOPs per token for ``tokens: [batch_size, seq_len]`` (as counted by FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    tokens = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(tokens)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / (batch_size * seq_len)


def training_memory_bytes(model: nn.Module, inputs: torch.Tensor) -> int:
    """Bytes of one training step: weights, grads, AdamW moments and activations saved for backward."""
    if inputs.device.type == "cuda":
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


def _cuda_peak(model: nn.Module, inputs: torch.Tensor) -> int:  # pragma: no cover - needs a GPU
    torch.cuda.reset_peak_memory_stats(inputs.device)
    logits, _ = model(inputs)
    logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated(inputs.device)


def measure_costs(
    model: nn.Module, *, train_seq_len: int, eval_seq_len: int, batch_size: int, device
) -> dict:
    """The static costs of ``model`` for a task: parameters, FLOPs/token, state size, memory."""
    tokens = torch.zeros(batch_size, train_seq_len, dtype=torch.long, device=device)
    return {
        "params": count_parameters(model),
        "flops_per_token": flops_per_token(model, train_seq_len, device=str(device)),
        "state_size": int(model.state_size(train_seq_len)),
        "state_size_eval": int(model.state_size(eval_seq_len)),
        "peak_memory_mb": training_memory_bytes(model, tokens) / 2**20,
    }


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
