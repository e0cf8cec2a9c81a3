"""What every kernel library behind ``backend=`` shares: finding it, importing it once, and the rule
that decides whether a call of a mixer's fast mode runs on its kernels.

A :class:`KernelLibrary` is one peer package (flash-linear-attention's ``fla``, mamba-ssm); the
modules :mod:`.fla` and :mod:`.mamba_ssm` each hold one and map their ops' conventions. The rule,
for a mixer ``owner`` whose option ``backend`` names the library (or ``"auto"``):

- at construction (:meth:`KernelLibrary.check`): the value is one the mixer takes, and a library
  named explicitly is installed;
- per call (:meth:`KernelLibrary.use`): the library named explicitly with an input its kernels cannot
  take (not on CUDA, or a dtype outside theirs), or a package that is installed but does not
  import, is a :class:`~mixerlab.errors.ConfigError` naming the field; ``"auto"`` takes the
  kernels only where they fit, and says once (a warning) when an installed package does not import.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mixerlab.errors import check, check_choice

#: the choices every mixer with a kernel library takes, besides the libraries' own names.
OWN_CHOICES = ("auto", "torch")


@functools.cache
def load(module: str, attribute: str | None = None) -> tuple[Any, ImportError | None]:
    """``module`` (or its ``attribute``), imported once, and ``None``; or ``None`` and the import error."""
    try:
        found = importlib.import_module(module)
        return (found if attribute is None else getattr(found, attribute)), None
    except ImportError as exc:
        return None, exc


def require(module: str, attribute: str | None = None) -> Any:
    """What :func:`load` finds; its import error is raised."""
    found, error = load(module, attribute)
    if error is not None:
        raise error
    return found


@functools.cache
def warn_once(message: str, stacklevel: int = 3) -> None:
    """A :class:`RuntimeWarning` the first time ``message`` is seen in this process; ``stacklevel``
    counts from the caller of :func:`warn_once` (3: the caller's caller, a layer)."""
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


@dataclass(frozen=True)
class KernelLibrary:
    """A peer package of kernels that a mixer's ``backend`` option can name; the strings are the
    words of its messages."""

    #: the ``backend`` value that names it
    choice: str
    #: its import name, found without importing it
    package: str
    #: its name in messages
    label: str
    #: why it is missing and how to install it
    install: str
    #: what runs on it, in the message for an input its kernels cannot take
    kernels: str
    #: what ``"auto"`` does instead, in that message
    fallback: str
    #: what ``"auto"`` does where the package does not import, in that warning
    auto_fallback: str

    def available(self) -> bool:
        """Whether the package is installed; cheap (finds it, does not import it)."""
        return importlib.util.find_spec(self.package) is not None

    def check(self, owner: str, backend: Any, choices: tuple[str, ...]) -> None:
        """``owner``'s ``backend`` option at construction: one of ``choices``, and this library
        installed where it is named."""
        check_choice(owner, "backend", backend, choices)
        check(
            backend != self.choice or self.available(),
            owner,
            "backend",
            backend,
            f"{self.install}; use 'auto' or 'torch'",
        )

    def use(
        self,
        owner: str,
        backend: str,
        x: Tensor,
        dtypes: tuple[torch.dtype, ...],
        load_kernels: Callable[[], tuple[Any, ImportError | None]],
    ) -> bool:
        """Whether this call of ``owner``'s fast mode runs on the kernels, for the input ``x``;
        ``load_kernels`` imports what the call needs (a broken install is an error only where the
        library is named, else a warning and another path)."""
        if backend not in ("auto", self.choice):
            return False
        fits = x.is_cuda and x.dtype in dtypes
        if backend == self.choice:
            check(
                fits,
                owner,
                "backend",
                backend,
                f"{self.kernels} need a CUDA input in {[str(d) for d in dtypes]}; got "
                f"{x.device.type} {x.dtype} ({self.fallback})",
            )
            # imported now, so that a broken install is an error here, not a silent fallback
            error = load_kernels()[1]
            broken = f"{self.label} is installed but does not import ({error})"
            check(error is None, owner, "backend", backend, broken)
            return True
        if not fits or not self.available():
            return False
        error = load_kernels()[1]
        if error is not None:
            broken = f"{self.label} is installed but does not import ({error})"
            # stacklevel 4: the layer, past this method and the module's own function
            warn_once(f"backend='auto': {broken}; {self.auto_fallback}", stacklevel=4)
        return error is None
