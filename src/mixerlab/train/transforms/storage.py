"""The packed file of a compressed model: low-bit weights stored as their bits, so the file shrinks.

``save_compressed(model, path)`` writes one ``torch.save`` payload of plain values (no pickled
classes, so ``torch.load(..., weights_only=True)`` reads it): a list of entries (key, kind,
shape, dtype, byte range, scales) and ONE ``uint8`` blob holding every tensor back to back, so a
small model's file is not dominated by per-tensor headers. Kinds:

- ``raw``: any tensor as its bytes (float32 weights, norms, embeddings, buffers); a float32
  tensor whose every value is exactly a bfloat16 or float16 (the ``cast`` transform rounds them
  so) is stored in that 16-bit type and widened again on load, losslessly;
- ``int``: integer codes of ``bits`` bits, ``w = (u + qmin - zero) * scale``, eight bits a
  weight for int8 and two weights a byte for int4;
- ``fp8``: one byte a weight, a ``torch.float8_e4m3fn`` / ``float8_e5m2`` code times a scale;
- ``ternary``: {-1, 0, 1} packed five to a byte (3^5 = 243 <= 256, 1.6 bits a weight) times a scale;
- ``binary``: {-1, 1} one bit a weight times a scale;
- ``sparse``: a float matrix with many zeros (pruned) as a one-bit mask plus its non-zeros.

A module that holds a quantised weight says so with ``packed_weight() -> dict`` (kind, codes as
integers, scale, zero); :mod:`.quantize`'s layers do. ``load_compressed(path, model)`` decodes
every entry and loads it into ``model``, which must have the same structure (build it the way
the saved one was built, e.g. apply the same transform to a fresh model): the decoded weights
are the saved module's weights bit for bit, so the outputs are the same.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check

FORMAT = "mixerlab.compressed/1"
FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


# -- bit packing ---------------------------------------------------------------------------------


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Unsigned ``codes`` (``< 2^bits``, any shape) packed ``8 // bits`` a byte: ``[ceil(n * bits / 8)]``."""
    per = 8 // bits
    flat = codes.reshape(-1).to(torch.int32)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % per)])
    shifts = torch.arange(per, dtype=torch.int32) * bits
    return (flat.reshape(-1, per) << shifts).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: Tensor, bits: int, numel: int) -> Tensor:
    per = 8 // bits
    shifts = torch.arange(per, dtype=torch.int32) * bits
    codes = (packed.to(torch.int32)[:, None] >> shifts) & ((1 << bits) - 1)
    return codes.reshape(-1)[:numel]


def pack_trits(trits: Tensor) -> Tensor:
    """Values in {-1, 0, 1} five to a byte (base 3): ``[ceil(n / 5)]`` bytes, 1.6 bits a value."""
    flat = (trits.reshape(-1).to(torch.int32) + 1).clamp(0, 2)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 5)])
    powers = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int32)
    return (flat.reshape(-1, 5) * powers).sum(dim=1).to(torch.uint8)


def unpack_trits(packed: Tensor, numel: int) -> Tensor:
    powers = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int32)
    digits = (packed.to(torch.int32)[:, None] // powers) % 3
    return digits.reshape(-1)[:numel] - 1


# -- decoding ------------------------------------------------------------------------------------


def dequantize(packed: dict[str, Any]) -> Tensor:
    """The float weight a ``packed_weight()`` dict stands for (the decoder :func:`load_compressed` uses)."""
    kind, shape, scale = packed["kind"], packed["shape"], packed["scale"]
    codes = packed["codes"]
    check(
        codes.numel() == torch.Size(shape).numel(),
        "load_compressed",
        "shape",
        shape,
        f"{codes.numel()} codes",
    )
    q = codes.reshape(shape).to(torch.float32)
    if kind == "int" and packed.get("zero") is not None:
        return (q - packed["zero"]) * scale
    if kind not in ("int", "fp8", "ternary", "binary"):
        raise ValueError(f"unknown packed kind {kind!r}")
    return q * scale


def _encode_packed(packed: dict[str, Any]) -> tuple[dict[str, Any], list[Tensor]]:
    """Entry metadata and its byte tensors for one ``packed_weight()`` dict."""
    kind, codes = packed["kind"], packed["codes"]
    meta: dict[str, Any] = {"kind": kind, "shape": list(packed["shape"])}
    if kind == "int":
        bits, qmin = packed["bits"], packed["qmin"]
        u = codes.to(torch.int32) - qmin
        body = u.to(torch.uint8).reshape(-1) if bits == 8 else pack_bits(u, 4 if bits == 4 else 8)
        meta.update(bits=bits, qmin=qmin)
    elif kind == "fp8":
        body = codes.to(FP8[packed["format"]]).reshape(-1).view(torch.uint8)
        meta.update(format=packed["format"])
    elif kind == "ternary":
        body = pack_trits(codes)
    elif kind == "binary":
        body = pack_bits((codes > 0).to(torch.int32), 1)
    else:
        raise ValueError(f"unknown packed kind {kind!r}")
    parts = [body, _as_bytes(packed["scale"])]
    meta["scale"] = _tensor_meta(packed["scale"])
    if packed.get("zero") is not None:
        parts.append(_as_bytes(packed["zero"]))
        meta["zero"] = _tensor_meta(packed["zero"])
    return meta, parts


def _decode_packed(meta: dict[str, Any], chunks: list[Tensor]) -> Tensor:
    kind, numel = meta["kind"], int(torch.Size(meta["shape"]).numel())
    body, scale = chunks[0], _from_bytes(chunks[1], meta["scale"])
    zero = _from_bytes(chunks[2], meta["zero"]) if "zero" in meta else None
    if kind == "int":
        bits = meta["bits"]
        u = body.to(torch.int32) if bits == 8 else unpack_bits(body, 4, numel)
        codes = u + meta["qmin"]
    elif kind == "fp8":
        codes = body.clone().view(FP8[meta["format"]]).to(torch.float32)
    elif kind == "ternary":
        codes = unpack_trits(body, numel)
    else:
        codes = unpack_bits(body, 1, numel) * 2 - 1
    return dequantize({"kind": kind, "shape": meta["shape"], "codes": codes, "scale": scale, "zero": zero})


def _tensor_meta(t: Tensor) -> dict[str, Any]:
    return {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}


def _as_bytes(t: Tensor) -> Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _from_bytes(b: Tensor, meta: dict[str, Any]) -> Tensor:
    # A copy first: a slice of the blob may start at an offset the wider type cannot view.
    return b.clone().view(getattr(torch, meta["dtype"])).reshape(meta["shape"])


# -- the file ------------------------------------------------------------------------------------


def _payload(model: nn.Module) -> dict[str, Any]:
    packed: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if hasattr(module, "packed_weight"):
            packed[f"{name}.weight" if name else "weight"] = module.packed_weight()
    entries, parts, offset, seen = [], [], 0, {}
    for key, value in model.state_dict().items():
        if key in packed:
            meta, chunks = _encode_packed(packed[key])
        elif value.is_floating_point() and value.dim() == 2 and _sparse_is_smaller(value):
            meta, chunks = _encode_sparse(value)
        else:
            ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
            if ident in seen and value.numel() > 0:  # a tied tensor is stored once
                entries.append({"key": key, "kind": "alias", "of": seen[ident]})
                continue
            seen[ident] = key
            stored = _narrowest(value)
            meta = {"kind": "raw", **_tensor_meta(value), "stored": str(stored.dtype).removeprefix("torch.")}
            chunks = [_as_bytes(stored)]
        ranges = []
        for chunk in chunks:
            ranges.append([offset, chunk.numel()])
            parts.append(chunk)
            offset += chunk.numel()
        entries.append({"key": key, "ranges": ranges, **meta})
    blob = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8)
    return {"format": FORMAT, "entries": entries, "blob": blob}


def _narrowest(value: Tensor) -> Tensor:
    """``value`` in a 16-bit float type if that holds every value exactly, else unchanged."""
    if value.dtype != torch.float32 or value.numel() == 0:
        return value
    for dtype in (torch.bfloat16, torch.float16):
        narrow = value.to(dtype)
        if torch.equal(narrow.to(torch.float32), value):
            return narrow
    return value


def _sparse_is_smaller(value: Tensor) -> bool:
    nnz = int((value != 0).sum())
    return nnz * value.element_size() + (value.numel() + 7) // 8 < value.numel() * value.element_size()


def _encode_sparse(value: Tensor) -> tuple[dict[str, Any], list[Tensor]]:
    mask = value != 0
    meta = {"kind": "sparse", **_tensor_meta(value)}
    return meta, [pack_bits(mask.to(torch.int32), 1), _as_bytes(value[mask])]


def save_compressed(model: nn.Module, path: str | os.PathLike | io.BytesIO) -> int:
    """Write ``model``'s weights in their packed form; returns the file's size in bytes."""
    buffer = io.BytesIO()
    # Serialised in memory first: the archive then has the same bytes whatever the file's name.
    torch.save(_payload(model), buffer)
    data = buffer.getvalue()
    if isinstance(path, io.BytesIO):
        path.write(data)
        return len(data)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # never a half-written file under the real name
    return len(data)


def compressed_bytes(model: nn.Module) -> int:
    """Size of :func:`save_compressed`'s file for ``model``, measured by writing it to memory."""
    return save_compressed(model, io.BytesIO())


def load_compressed(path: str | os.PathLike | io.BytesIO, model: nn.Module) -> nn.Module:
    """Decode the file at ``path`` into ``model`` (same structure as the saved one); returns it."""
    if isinstance(path, io.BytesIO):
        path.seek(0)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    check(
        isinstance(payload, dict) and payload.get("format") == FORMAT,
        "load_compressed",
        "path",
        str(path),
        f"a file written by save_compressed (format {FORMAT})",
    )
    blob, state = payload["blob"], {}
    for entry in payload["entries"]:
        if entry["kind"] == "alias":
            state[entry["key"]] = state[entry["of"]]
            continue
        chunks = [blob[lo : lo + n] for lo, n in entry["ranges"]]
        if entry["kind"] == "raw":
            stored = {**entry, "dtype": entry.get("stored", entry["dtype"])}
            state[entry["key"]] = _from_bytes(chunks[0], stored).to(getattr(torch, entry["dtype"]))
        elif entry["kind"] == "sparse":
            numel = int(torch.Size(entry["shape"]).numel())
            mask = unpack_bits(chunks[0], 1, numel).bool()
            dtype = getattr(torch, entry["dtype"])
            dense = torch.zeros(numel, dtype=dtype)
            dense[mask] = chunks[1].clone().view(dtype)
            state[entry["key"]] = dense.reshape(entry["shape"])
        else:
            state[entry["key"]] = _decode_packed(entry, chunks)
    target = model.state_dict()
    for key, value in state.items():
        if key in target:
            state[key] = value.to(dtype=target[key].dtype, device=target[key].device)
    model.load_state_dict(state)
    return model
