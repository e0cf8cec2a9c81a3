"""Checkpoints that load without running code, written atomically.

A checkpoint is one safetensors file: every tensor of the payload (model weights, optimiser
moments, random-generator states) is a named tensor of the file, and everything else (the
config, counters, the schedule, the result so far) is JSON in the file's metadata, with each
tensor replaced by a reference to its name. Reading it parses JSON and copies raw bytes into
tensors; nothing is unpickled, so a planted file cannot run code.

The file is written to a temporary name in the same folder and renamed over the old one, so a run
killed while saving keeps its previous checkpoint.

Checkpoints of earlier mixerlab versions are pickles (``torch.save``). They are refused unless the
caller trusts them: ``load_checkpoint(path, trust_pickle=True)``, or the
:func:`trusting_pickle_checkpoints` context (``mixerlab train --trust-checkpoint``). The next
checkpoint the trainer writes over it is in the safe format.

Payload values: tensors, ``None``, bools, ints, floats (NaN and infinities included), strings, and
lists, tuples and dicts of them (dict keys of any of those but tensors). Tuples come back as
tuples and integer keys as integers, so an optimiser's ``state_dict`` round-trips exactly.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import random
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mixerlab.errors import ConfigError

FORMAT = "mixerlab.checkpoint"
VERSION = "1"
TRUST_OPTION = "trust_pickle=True (command line: mixerlab train --trust-checkpoint)"

# Markers of the JSON tree: a tensor, a tuple, a dict whose keys are not all plain strings.
_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"
_MARKERS = (_TENSOR, _TUPLE, _DICT)

_trust_pickle: contextvars.ContextVar[bool] = contextvars.ContextVar("trust_pickle", default=False)


@contextlib.contextmanager
def trusting_pickle_checkpoints() -> Iterator[None]:
    """Within this context, :func:`load_checkpoint` also loads pickle checkpoints (they can run code).

    For callers that cannot pass ``trust_pickle`` down to the trainer (the command line).
    """
    token = _trust_pickle.set(True)
    try:
        yield
    finally:
        _trust_pickle.reset(token)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` as a safetensors file to a temporary name, then rename it over ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(payload, (), tensors)
    metadata = {"format": FORMAT, "version": VERSION, "payload": json.dumps(tree)}
    data = _safetensors().save(tensors, metadata=metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, *, trust_pickle: bool | None = None) -> dict[str, Any] | None:
    """The payload at ``path`` (tensors on the CPU), or None when there is no checkpoint yet.

    A pickle checkpoint (an earlier mixerlab's) is a :class:`~mixerlab.errors.ConfigError`
    naming the file, unless ``trust_pickle`` is true (None: trusted only inside
    :func:`trusting_pickle_checkpoints`); a file that is neither is an error too.
    """
    path = Path(path)
    if not path.exists():
        return None
    if trust_pickle is None:
        trust_pickle = _trust_pickle.get()
    data = path.read_bytes()
    metadata = _safetensors_metadata(data)
    if metadata is not None and metadata.get("format") == FORMAT:
        if metadata.get("version") != VERSION:
            raise ConfigError(
                "checkpoint",
                "version",
                metadata.get("version"),
                f"{path} was written by another mixerlab; this one reads version {VERSION}",
            )
        # Tensors made from the bytes share their (read-only) buffer: copy them.
        tensors = {name: t.clone() for name, t in _safetensors().load(data).items()}
        return _decode(json.loads(metadata["payload"]), tensors)
    if _is_pickle(data):
        if not trust_pickle:
            raise ConfigError(
                "checkpoint",
                "path",
                str(path),
                "it is a pickle checkpoint (an earlier mixerlab's, or not mixerlab's): loading it "
                f"can run code; if you trust this file, pass {TRUST_OPTION}",
            )
        return torch.load(path, map_location="cpu", weights_only=False)
    raise ConfigError(
        "checkpoint", "path", str(path), "it is not a mixerlab checkpoint (a safetensors file it wrote)"
    )


def rng_state() -> dict[str, Any]:
    """Every random stream a run may draw from: Python's, NumPy's (if imported), torch's CPU and CUDA.

    What :func:`set_rng_state` restores; a payload value that :func:`save_checkpoint` stores.
    """
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        kind, keys, pos, has_gauss, gauss = numpy.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (a stream it did not capture is left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        numpy.random.set_state((kind, keys.numpy().astype(numpy.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the format ------------------------------------------------------------------------------------


def _encode(value: Any, where: tuple[str, ...], tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as JSON, its tensors moved to ``tensors`` under their path in the payload."""
    if isinstance(value, torch.Tensor):
        _check_storable(value, where)
        name = ".".join(where) or "tensor"
        while name in tensors:  # two paths that join to the same string ("a.b" / "a", "b")
            name += "'"
        # A copy of its own, so that views of one storage (tied weights) are separate tensors.
        tensors[name] = value.detach().to("cpu").contiguous().clone()
        return {_TENSOR: name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, (*where, str(i)), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, (*where, str(i)), tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not any(k in _MARKERS for k in value):
            return {k: _encode(v, (*where, k), tensors) for k, v in value.items()}
        pairs = []
        for k, v in value.items():
            if isinstance(k, torch.Tensor):
                _unstorable(where, k)
            pairs.append([_encode(k, where, tensors), _encode(v, (*where, str(k)), tensors)])
        return {_DICT: pairs}
    _unstorable(where, value)


def _decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((marker, inner),) = tree.items()
        if marker == _TENSOR:
            return tensors[inner]
        if marker == _TUPLE:
            return tuple(_decode(v, tensors) for v in inner)
        if marker == _DICT:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in inner}
    return {k: _decode(v, tensors) for k, v in tree.items()}


def _check_storable(tensor: torch.Tensor, where: tuple[str, ...]) -> None:
    """A tensor safetensors holds: dense (strided) and not quantised."""
    if tensor.layout is not torch.strided or tensor.is_quantized:
        raise ConfigError(
            "checkpoint",
            ".".join(where),
            f"a {tensor.layout} {tensor.dtype} tensor",
            "a checkpoint holds dense tensors; store a sparse or quantised one as its dense parts",
        )


def _unstorable(where: tuple[str, ...], value: Any) -> None:
    raise ConfigError(
        "checkpoint",
        ".".join(where) or "payload",
        f"a {type(value).__name__}",
        "a checkpoint holds tensors, None, bools, numbers, strings, and lists, tuples and dicts of them",
    )


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError(
            "mixerlab checkpoints are safetensors files: pip install 'safetensors>=0.4'"
        ) from None
    return safetensors.torch


def _safetensors_metadata(data: bytes) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors file's header, or None when ``data`` is not one."""
    if len(data) < 8:
        return None
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8 or data[8:9] != b"{":
        return None
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header.get("__metadata__") or {} if isinstance(header, dict) else None


def _is_pickle(data: bytes) -> bool:
    # torch.save writes a zip archive (a pickle inside); older torch and pickle.dump a bare pickle.
    return data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"
