"""safetensors files, read and written directly (no dependency): the standard safe weight format.

Layout (https://github.com/huggingface/safetensors)::

    8 bytes      N, the header length, unsigned little-endian
    N bytes      JSON: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
                        ..., "__metadata__": {"key": "value"}}   (padded with spaces)
    rest         the tensors' little-endian C-order bytes; offsets are relative to here

Loading validates the header length against the file, every dtype, shape and offset pair, and
that the tensors tile the data region exactly, before reading any tensor; a file declaring
more bytes than it holds fails with a ``ValueError`` instead of allocating. Writes are atomic.

    >>> save_safetensors({"w": np.ones((2, 3), np.float32)}, "w.safetensors")  # doctest: +SKIP
    >>> load_safetensors("w.safetensors")["w"].shape                            # doctest: +SKIP
    (2, 3)
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from .atomic import atomic_write

__all__ = ["save_safetensors", "load_safetensors"]

# safetensors dtype -> NumPy little-endian dtype. BF16 has no NumPy type: loaded as float32.
_DTYPES = {
    "BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
    "BF16": "<u2", "I32": "<i4", "U32": "<u4", "F32": "<f4", "F64": "<f8", "I64": "<i8",
    "U64": "<u8", "C64": "<c8",
}
_NAMES = {np.dtype(v).str: k for k, v in _DTYPES.items() if k != "BF16"}  # '<f4' -> 'F32'

MAX_HEADER = 100_000_000  # the reference implementation's limit


def _error(path, message):
    return ValueError(f"load_safetensors: {path}: {message}")


def save_safetensors(tensors, path, metadata=None):
    """Write a dict of arrays (or Tensors) to ``path`` in the safetensors format, atomically.

    Args:
        tensors: ``{name: array}``; names are strings (not ``__metadata__``), arrays of bool,
            (u)int8-64 or float16/32/64 (complex64 too). Stored little-endian, C order.
        metadata: optional ``{str: str}`` written as ``__metadata__``.

    Shape: every array keeps its shape (0-d and empty arrays included).
    """
    if not isinstance(tensors, dict):
        raise TypeError(f"save_safetensors: tensors must be a dict of name -> array, got {type(tensors).__name__}")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise TypeError("save_safetensors: metadata must be a dict of str -> str")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"save_safetensors: tensor names must be strings other than '__metadata__', got {name!r}")
        arr = np.asarray(value)  # atrous Tensors give their array
        little = arr.dtype.newbyteorder("<")
        if little.str not in _NAMES:
            raise TypeError(f"save_safetensors: {name!r} has dtype {arr.dtype}, which safetensors cannot store")
        arrays[name] = (_NAMES[little.str], np.asarray(arr, dtype=little, order="C"))
    # Largest elements first, then by name (the reference writer's order): every tensor starts
    # at a multiple of its own item size.
    order = sorted(arrays, key=lambda n: (-arrays[n][1].dtype.itemsize, n))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in order:
        dtype, arr = arrays[name]
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data region starts 8-byte aligned
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            f.write(arrays[name][1].tobytes())


def _read_header(f, path, size):
    head = f.read(8)
    if len(head) < 8:
        raise _error(path, f"file of {size} bytes is too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER or n > size - 8:
        raise _error(path, f"header declares {n} bytes but the file holds {size - 8} after the length "
                           f"(limit {MAX_HEADER})")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _error(path, f"header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise _error(path, "header must be a JSON object")
    return header, 8 + n


def _check_entries(path, header, data_size):
    entries = []
    for name, spec in header.items():
        if name == "__metadata__":
            if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
                raise _error(path, "__metadata__ must map strings to strings")
            continue
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise _error(path, f"tensor {name!r} needs exactly dtype, shape and data_offsets, got {spec!r:.200}")
        dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        if dtype not in _DTYPES:
            raise _error(path, f"tensor {name!r} has unknown dtype {dtype!r} (known: {', '.join(_DTYPES)})")
        ints = lambda v: isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)  # noqa: E731
        if not ints(shape):
            raise _error(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not ints(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
            raise _error(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        numel = 1
        for d in shape:
            numel *= d
        nbytes = numel * np.dtype(_DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _error(path, f"tensor {name!r} of {dtype} {shape} needs {nbytes} bytes but data_offsets "
                               f"{offsets} span {offsets[1] - offsets[0]}")
        if offsets[1] > data_size:
            raise _error(path, f"tensor {name!r} ends at byte {offsets[1]} of a data region of {data_size} bytes "
                               "(truncated file?)")
        entries.append((offsets[0], offsets[1], name, dtype, tuple(shape)))
    entries.sort()
    end = 0
    for begin, stop, name, _, _ in entries:
        if begin != end:
            raise _error(path, f"tensor {name!r} starts at byte {begin} but the previous one ends at {end} "
                               "(gaps and overlaps are invalid)")
        end = stop
    if end != data_size:
        raise _error(path, f"tensors cover {end} bytes of a data region of {data_size}")
    return entries


def load_safetensors(path, with_metadata=False):
    """Read a safetensors file into ``{name: array}`` (file order of the header).

    Arrays are native-endian, writeable and own their memory; BF16 tensors become float32
    (NumPy has no bfloat16). With ``with_metadata=True`` returns ``(tensors, metadata)``.

    Raises ``ValueError`` naming the file and the offending entry for a truncated file, an
    oversized or malformed header, unknown dtypes, or offsets that do not match the shapes.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, start = _read_header(f, path, size)
        entries = _check_entries(path, header, size - start)
        loaded = {}
        for begin, stop, name, dtype, shape in entries:
            f.seek(start + begin)
            raw = f.read(stop - begin)
            if len(raw) != stop - begin:  # pragma: no cover - the size check above rules this out
                raise _error(path, f"tensor {name!r} is truncated")
            arr = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape)
            if dtype == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            else:
                arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)
            loaded[name] = arr
    tensors = {name: loaded[name] for name in header if name != "__metadata__"}
    if with_metadata:
        return tensors, dict(header.get("__metadata__") or {})
    return tensors
