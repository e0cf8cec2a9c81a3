"""Optional accelerated backends: peer libraries' kernels behind mixerlab's op functions.

A mixer whose operator a peer implements takes ``backend="auto" | "torch" | "fla"``:

- ``"torch"``: mixerlab's own PyTorch forms, on every device.
- ``"fla"``: flash-linear-attention's Triton kernels (arXiv:2312.06635's library), for CUDA inputs
  in float32 / bfloat16 / float16; asking for it without the package, or with an input it cannot
  take, is a :class:`~mixerlab.errors.ConfigError` naming the ``backend`` field.
- ``"auto"`` (the default): ``"fla"`` when the input is on CUDA in a dtype the kernels take and the
  package imports, else ``"torch"``. On a CPU, and in float64 anywhere, this is always ``"torch"``.

Only the fast mode dispatches; ``reference`` and ``recurrent`` modes are always mixerlab's loops,
so every kernel stays checked against the per-step reference. Each family's mapping of
conventions (scaling, log-space gates, layouts, states) lives in one module here: :mod:`.fla`.

``mamba`` and ``mamba2`` also take ``"mamba_ssm"``: the authors' kernels from the mamba-ssm and
causal-conv1d packages (:mod:`.mamba_ssm`); for them ``"auto"`` on CUDA picks mamba-ssm when it
imports, else fla, else mixerlab's forms.

The rule above (validation, the per-call choice, the one-time warnings, the lazy imports) is one
:class:`~mixerlab.ops.backends._loader.KernelLibrary` per package; the modules hold the mappings.
"""

from mixerlab.ops.backends.fla import (
    BACKENDS,
    check_backend,
    delta_rule_fla,
    fla_available,
    linear_attention_fla,
    rwkv6_fla,
    selective_scan_fla,
    ssd_fla,
    use_fla,
)

__all__ = [
    "BACKENDS",
    "check_backend",
    "delta_rule_fla",
    "fla_available",
    "linear_attention_fla",
    "rwkv6_fla",
    "selective_scan_fla",
    "ssd_fla",
    "use_fla",
]
