import pytest
import torch

#: Every device the device-parametrised tests run on: the CPU always, CUDA when present. On a
#: machine without CUDA its items are skipped before any setup, so they cost the CPU suite nothing.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    ),
]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a test runs on (see ``DEVICES``)."""
    return torch.device(request.param)
