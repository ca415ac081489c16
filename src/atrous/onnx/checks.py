"""Validation of ONNX files before anything is allocated or read from disk.

A model file is data, never code, and a crafted one must fail fast with a clear message:

* every tensor's declared shape is checked (non-negative dims, element count and byte size
  under the limits) *before* its array is built, and embedded data must be exactly as long as
  the shape declares (a 10^12-element tensor carrying 0 bytes is refused, not allocated);
* external data (``data_location = EXTERNAL``) must name a relative file that stays inside
  the model's folder once ``..`` and symbolic links are resolved, and the declared
  ``offset``/``length`` must lie inside that file and match the declared shape.

The checks read only the protobuf fields; ``onnx`` itself is imported lazily by the callers.
"""
from __future__ import annotations

import math
import os

import numpy as np

MAX_TENSOR_BYTES = 1 << 34  # 16 GiB: the largest single tensor a file may declare
MAX_ELEMENTS = 1 << 32  # elements of one tensor (also bounds runtime outputs, see check_alloc)


class OnnxImportError(ValueError):
    """An ONNX model that cannot be imported: unsupported op/attribute, unsafe or malformed data."""


class OnnxRuntimeError(RuntimeError):
    """A node of an imported model failed while running; the message names the node and op."""


# ONNX TensorProto.DataType codes -> NumPy dtypes the importer can hold.
DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}
DTYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16"}


def np_dtype(elem_type, what):
    """The NumPy dtype of an ONNX element type, or OnnxImportError naming ``what``."""
    if elem_type not in DTYPES:
        name = DTYPE_NAMES.get(elem_type, f"type code {elem_type}")
        raise OnnxImportError(f"{what}: element type {name} is not supported "
                              f"(supported: float16/32/64, int8-64, uint8-64, bool)")
    return np.dtype(DTYPES[elem_type])


def check_declared_size(dims, dtype, what, max_bytes=MAX_TENSOR_BYTES):
    """Validate a declared shape before allocating it; returns (shape tuple, byte count)."""
    dims = tuple(int(d) for d in dims)
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"{what}: declared shape {list(dims)} has a negative dimension")
    count = math.prod(dims)
    nbytes = count * np.dtype(dtype).itemsize
    if count > MAX_ELEMENTS or nbytes > max_bytes:
        raise OnnxImportError(
            f"{what}: declared shape {list(dims)} has {count:.3g} elements ({_human(nbytes)}), over "
            f"the limit of {MAX_ELEMENTS:.3g} elements / {_human(max_bytes)} per tensor; refusing "
            f"to allocate it"
        )
    return dims, nbytes


def check_alloc(what, shape, itemsize):
    """Runtime guard for ops whose output size comes from data (Resize scales, Pad amounts)."""
    count = math.prod(int(d) for d in shape)
    if any(int(d) < 0 for d in shape):
        raise OnnxRuntimeError(f"{what}: computed output shape {tuple(shape)} has a negative dimension")
    if count > MAX_ELEMENTS or count * itemsize > MAX_TENSOR_BYTES:
        raise OnnxRuntimeError(
            f"{what}: computed output shape {tuple(shape)} has {count:.3g} elements "
            f"({_human(count * itemsize)}), over the per-tensor limit; refusing to allocate it"
        )


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def external_data_info(tensor):
    """The ``external_data`` key/value entries of a TensorProto as a dict of strings."""
    return {e.key: e.value for e in tensor.external_data}


def resolve_external_path(location, base_dir, what):
    """Absolute path of an external-data file, refused unless it stays inside ``base_dir``.

    Absolute paths, drive letters, and anything that escapes the model's folder after
    normalisation or symbolic-link resolution ('../secret', 'sub/../../x', a link pointing
    out) are refused before the file is opened.
    """
    if base_dir is None:
        raise OnnxImportError(
            f"{what}: external data file {location!r} but the model was given as bytes; "
            f"pass base_dir= (the folder holding the data files)"
        )
    if not location or "\x00" in location:
        raise OnnxImportError(f"{what}: empty or invalid external data location {location!r}")
    if os.path.isabs(location) or os.path.splitdrive(location)[0] or location.startswith(("/", "\\")):
        raise OnnxImportError(
            f"{what}: external data location {location!r} is an absolute path; only paths "
            f"relative to the model's folder are allowed"
        )
    root = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, target]) != root or target == root:
        raise OnnxImportError(
            f"{what}: external data location {location!r} resolves to {target!r}, outside the "
            f"model's folder {root!r}; refusing to read it"
        )
    if not os.path.isfile(target):
        raise OnnxImportError(f"{what}: external data file {location!r} does not exist in {root!r}")
    return target


def read_external(tensor, dtype, shape, nbytes, base_dir, what):
    """Read an external tensor's bytes after validating path, offset and length."""
    info = external_data_info(tensor)
    path = resolve_external_path(info.get("location", ""), base_dir, what)
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise OnnxImportError(f"{what}: external data offset/length must be integers, got {info}") from None
    size = os.path.getsize(path)
    if offset < 0 or (length is not None and length < 0):
        raise OnnxImportError(f"{what}: negative external data offset/length ({offset}, {length})")
    if length is not None and length != nbytes:
        raise OnnxImportError(
            f"{what}: external data length {length} does not match the declared shape "
            f"{list(shape)} of {dtype} ({nbytes} bytes)"
        )
    if offset + nbytes > size:
        raise OnnxImportError(
            f"{what}: external data needs bytes {offset}..{offset + nbytes} of {info['location']!r} "
            f"but the file has {size} bytes"
        )
    with open(path, "rb") as f:
        f.seek(offset)
        buf = f.read(nbytes)
    return np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


# Fields of TensorProto that can hold embedded data, by dtype kind.
def _embedded_count(tensor, dtype):
    """Number of elements the embedded data actually holds (raw bytes or typed fields)."""
    if tensor.HasField("raw_data"):
        return len(tensor.raw_data) // dtype.itemsize, len(tensor.raw_data) % dtype.itemsize
    t = tensor.data_type
    if t in (1,):
        n = len(tensor.float_data)
    elif t == 11:
        n = len(tensor.double_data)
    elif t in (7,):
        n = len(tensor.int64_data)
    elif t in (12, 13):
        n = len(tensor.uint64_data)
    else:  # int8/16/32, uint8/16, bool, float16 are stored in int32_data
        n = len(tensor.int32_data)
    return n, 0


def tensor_to_array(tensor, what, base_dir=None, max_bytes=MAX_TENSOR_BYTES):
    """A validated NumPy copy of a TensorProto (embedded or external data)."""
    from onnx import numpy_helper

    if tensor.HasField("segment"):
        raise OnnxImportError(f"{what}: segmented tensors are not supported")
    dtype = np_dtype(tensor.data_type, what)
    shape, nbytes = check_declared_size(tensor.dims, dtype, what, max_bytes)
    count = math.prod(shape)
    if tensor.data_location == 1:  # EXTERNAL
        return read_external(tensor, dtype, shape, nbytes, base_dir, what)
    have, rest = _embedded_count(tensor, dtype)
    if have != count or rest:
        raise OnnxImportError(
            f"{what}: declared shape {list(shape)} needs {count} elements of {dtype} but the file "
            f"holds {have}; refusing a tensor whose data does not match its shape"
        )
    return np.array(numpy_helper.to_array(tensor), dtype=dtype, copy=True).reshape(shape)
