"""Read PyTorch ``torch.save`` checkpoints of tensors without PyTorch and without running code.

A ``torch.save`` file (PyTorch >= 1.6) is a zip archive::

    <stem>/data.pkl        the object tree, pickled; tensors as rebuild records
    <stem>/data/<key>      one raw storage per key (little-endian unless <stem>/byteorder says big)
    <stem>/byteorder, <stem>/version, ...

``data.pkl`` is read by a restricted ``pickle.Unpickler`` whose ``find_class`` knows only the
records a tensor checkpoint needs -- ``torch._utils._rebuild_tensor_v2``/``_v3``,
``torch._utils._rebuild_parameter``, the storage classes (``torch.FloatStorage`` ...,
``torch.storage.UntypedStorage``), dtype names (``torch.float32`` ...) and
``collections.OrderedDict`` -- and maps each to a small NumPy function written here; no torch
code is imported or called. Any other global (``os.system``, ``builtins.eval``, a model class)
raises :class:`UnsafeCheckpointError` naming it, before anything is called. Storage sizes are
checked against the zip entries, and each tensor's size, stride and offset against its
storage, before any array is allocated.

    >>> from atrous.io.torch_pickle import load_torch_state_dict
    >>> state = load_torch_state_dict("resnet18.pth")        # doctest: +SKIP
    >>> model.load_state_dict(state)                          # doctest: +SKIP
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import re
import zipfile

import numpy as np

__all__ = ["load_torch_state_dict", "UnsafeCheckpointError"]

# Storage class -> dtype of one storage element ("bf16" is widened to float32 on load).
_STORAGES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
}
# torch dtype names that may appear as records (``_rebuild_tensor_v3`` passes one).
_DTYPES = {
    "float32": "f4", "float": "f4", "float64": "f8", "double": "f8", "float16": "f2",
    "half": "f2", "bfloat16": "bf16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4",
    "int16": "i2", "short": "i2", "int8": "i1", "uint8": "u1", "bool": "?", "uint16": "u2",
    "uint32": "u4", "uint64": "u8", "complex64": "c8", "complex128": "c16",
}
# A stride-0 (broadcast) tensor may claim more elements than its storage holds; materialising
# one is allowed up to this many bytes, so a crafted shape cannot exhaust memory.
MAX_BROADCAST_BYTES = 1 << 30
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint asked for something other than tensor data (code, unknown classes)."""


class _DType:
    """A storage class or dtype named by a record: only its element type, never callable."""

    __slots__ = ("code", "name")

    def __init__(self, code, name):
        self.code, self.name = code, name

    def numpy(self, byteorder):
        if self.code == "bf16":
            return np.dtype(byteorder + "u2")
        return np.dtype(self.code if self.code in ("?", "u1", "i1") else byteorder + self.code)


class _Storage:
    __slots__ = ("array", "kind")

    def __init__(self, array, kind):
        self.array, self.kind = array, kind  # 1-D storage elements; kind = _DType


class _TensorRecord:
    """A rebuilt tensor (has no ``__setstate__`` or ``__dict__``: BUILD records cannot touch it)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


def _error(path, message):
    return ValueError(f"load_torch_state_dict: {path}: {message}")


def _ints(path, what, value):
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise _error(path, f"tensor {what} must be a tuple of ints, got {value!r}")
    return tuple(value)


def _materialise(path, storage, offset, size, stride, dtype=None, byteorder="<"):
    """The tensor (size, stride, offset) over ``storage`` as a fresh C-contiguous array."""
    if not isinstance(storage, _Storage):
        raise _error(path, f"tensor record without a storage (got {type(storage).__name__})")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise _error(path, f"tensor storage_offset must be a non-negative int, got {offset!r}")
    size, stride = _ints(path, "size", size), _ints(path, "stride", stride)
    if len(size) != len(stride) or min(size + stride, default=0) < 0:
        raise _error(path, f"tensor size {size} and stride {stride} must be non-negative and of equal length")
    data, kind = storage.array, storage.kind
    if dtype is not None:  # _rebuild_tensor_v3: an untyped (byte) storage viewed as dtype
        if not isinstance(dtype, _DType):
            raise _error(path, f"tensor dtype record must be a torch dtype, got {dtype!r}")
        target = dtype.numpy(byteorder)
        if data.dtype != target:
            if data.nbytes % target.itemsize:
                raise _error(path, f"storage of {data.nbytes} bytes is not a whole number of {dtype.name}")
            data = data.view(np.uint8).view(target)
        kind = dtype
    numel = 1
    for n in size:
        numel *= n
    if numel:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= data.size:
            raise _error(path, f"tensor of size {size}, stride {stride}, offset {offset} reaches element "
                               f"{last} of a storage holding {data.size}")
        if numel > data.size and numel * data.itemsize > MAX_BROADCAST_BYTES:
            raise _error(path, f"tensor of size {size} declares {numel} elements over a storage of "
                               f"{data.size}; refusing to allocate {numel * data.itemsize} bytes")
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride), writeable=False)
    else:
        view = np.empty(size, dtype=data.dtype)
    native = data.dtype.newbyteorder("=") if data.dtype.byteorder in "<>" else data.dtype
    out = np.array(view, dtype=native, order="C")
    if kind.code == "bf16":  # bfloat16 is the top half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return _TensorRecord(out)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, path, byteorder):
        super().__init__(file)
        self.archive, self.prefix, self.path, self.byteorder = archive, prefix, path, byteorder
        self.storages = {}
        path_ = path

        def rebuild_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
            return _materialise(path_, storage, offset, size, stride)

        def rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
            return _materialise(path_, storage, offset, size, stride, dtype, byteorder)

        def rebuild_legacy(storage, offset, size, stride):
            return _materialise(path_, storage, offset, size, stride)

        def rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
            if not isinstance(data, _TensorRecord):
                raise _error(path_, f"parameter record without tensor data (got {type(data).__name__})")
            return data

        self.allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild_v2,
            ("torch._utils", "_rebuild_tensor_v3"): rebuild_v3,
            ("torch._utils", "_rebuild_tensor"): rebuild_legacy,
            ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
            ("torch.storage", "UntypedStorage"): _DType("u1", "UntypedStorage"),
        }
        for name, code in _STORAGES.items():
            self.allowed[("torch", name)] = _DType(code, name)
        for name, code in _DTYPES.items():
            self.allowed[("torch", name)] = _DType(code, name)

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(
                f"load_torch_state_dict: {self.path}: refusing to load global '{module}.{name}': only "
                "tensor-rebuild records, storage and dtype names and collections.OrderedDict are "
                "allowed (the file would run code or needs classes this reader does not trust)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(
                f"load_torch_state_dict: {self.path}: unexpected persistent record {pid!r:.200}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _DType) or not isinstance(key, str) or not _KEY.match(key):
            raise _error(self.path, f"bad storage record {pid!r:.200}")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise _error(self.path, f"storage {key} declares {numel!r} elements")
        if key not in self.storages:
            dtype = kind.numpy(self.byteorder)
            name = f"{self.prefix}data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise _error(self.path, f"storage {key} is missing ({name} not in the archive)") from None
            want = numel * dtype.itemsize
            if info.file_size != want:
                raise _error(self.path, f"storage {key} declares {numel} x {kind.name} = {want} bytes "
                                        f"but its entry {name} holds {info.file_size}")
            # A compressed entry could claim any size; deflate cannot exceed ~1032:1.
            limit = info.compress_size * 1100 + 4096 if info.compress_type else os.path.getsize(self.path)
            if info.file_size > limit:
                raise _error(self.path, f"storage {key} declares {info.file_size} bytes, more than the "
                                        f"archive can hold")
            raw = self.archive.read(name)
            self.storages[key] = _Storage(np.frombuffer(raw, dtype=dtype), kind)
        storage = self.storages[key]
        if storage.kind.code != kind.code and kind.code != "u1":
            raise _error(self.path, f"storage {key} is used as both {storage.kind.name} and {kind.name}")
        return storage


def _unwrap(obj):
    if isinstance(obj, _TensorRecord):
        return obj.array
    if isinstance(obj, dict):  # OrderedDict too: a plain dict keeps the order
        return {k: _unwrap(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unwrap(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_unwrap(v) for v in obj)
    if isinstance(obj, (_Storage, _DType)):
        raise ValueError("load_torch_state_dict: a bare storage or dtype is not tensor data")
    return obj


def load_torch_state_dict(path):
    """Load a ``torch.save``d dict of tensors as a dict of NumPy arrays, without PyTorch.

    Tensors keep their dtype (bfloat16 becomes float32, which NumPy lacks), shape and values;
    views are materialised from their storage with the saved strides and offsets, so each
    array owns C-contiguous memory. ``nn.Parameter`` entries load as plain arrays. Nested
    containers (``{"model": state_dict, "epoch": 3}``) keep their structure; OrderedDicts
    become dicts in the same order.

    Raises:
        UnsafeCheckpointError: the pickle names anything but tensor records (code, classes).
        ValueError: not a zip checkpoint (e.g. the pre-1.6 legacy format), or sizes that do not
            match the stored data; nothing is allocated beyond what the file holds.

    >>> state = load_torch_state_dict("resnet18.pth")   # doctest: +SKIP
    >>> state["conv1.weight"].shape                     # doctest: +SKIP
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        hint = (" (it looks like the legacy pre-1.6 torch.save format; re-save it with a recent "
                "PyTorch)") if head[:1] == b"\x80" else ""
        raise _error(path, f"not a torch.save zip archive{hint}")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise _error(path, f"expected one <name>/data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "<"
        if f"{prefix}byteorder" in archive.namelist():
            order = archive.read(f"{prefix}byteorder")[:16].decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise _error(path, f"unknown byteorder {order!r}")
            byteorder = "<" if order == "little" else ">"
        info = archive.getinfo(pickles[0])
        if info.file_size > os.path.getsize(path) * 1100 + 4096:
            raise _error(path, f"data.pkl declares {info.file_size} bytes")
        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix, path,
                                         byteorder)
        obj = unpickler.load()
    result = _unwrap(obj)
    if not isinstance(result, dict):
        raise _error(path, f"expected a state dict (a dict of tensors), found {type(result).__name__}")
    return result
