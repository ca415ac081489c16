"""MNIST from the standard IDX files, gzipped or not, checked before use.

IDX format (big-endian): a 4-byte magic ``0x00 0x00 <type> <ndim>`` (type 0x08 = uint8), then
``ndim`` uint32 sizes, then the data row-major. Images are magic 2051 (uint8, 3-D: N, rows, cols),
labels 2049 (uint8, 1-D: N).
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
           "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]  # torchvision's names
_PREFIX = {"train": "train", "test": "t10k"}


def _read_bytes(path):
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip's magic: a plain IDX file
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"mnist: {path} is a corrupt or truncated gzip file ({e})") from None


def read_idx(path, magic, ndim):
    """Read one IDX file of uint8 data and check it: magic number, header, exact file size.

    Returns an array of the header's shape. Errors name the file and expected vs found values.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"mnist: {path} is too short for an IDX header ({len(data)} bytes, need at least 4)")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ValueError(f"mnist: {path} has magic number {found}, expected {magic} (not the right IDX file)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"mnist: {path} is truncated: {len(data)} bytes, the header alone needs {header}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(
            f"mnist: {path} is {what}: header shape {shape} needs {expected} bytes, found {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _locate(root, name):
    """The path of ``name`` or ``name.gz`` in ``root`` (or torchvision's ``root/MNIST/raw``)."""
    root = Path(root)
    tried = []
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
    raise FileNotFoundError(f"mnist: cannot find {name}; looked for " + ", ".join(tried))


def mnist(root, split="train"):
    """MNIST as an ``ArrayDataset`` read from ``root``.

    Files: ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (split 'train') or
    ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` ('test'), each plain or ``.gz``, in
    ``root`` or ``root/MNIST/raw``.

    Shape: images (N, 1, H, W) raw uint8 (0..255; ``transforms.ToFloat()`` scales a batch to
    [0, 1]), labels (N,) int64 in 0..9. N = 60000 / 10000 and H = W = 28 for the real files.
    """
    if split not in _PREFIX:
        raise ValueError(f"mnist: split must be 'train' or 'test', got {split!r}")
    prefix = _PREFIX[split]
    images_path = _locate(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _locate(root, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IMAGES_MAGIC, 3)
    labels = read_idx(labels_path, LABELS_MAGIC, 1)
    if 0 in images.shape[1:]:
        raise ValueError(
            f"mnist: {images_path} has image size {images.shape[1:]}, expected rows and cols >= 1"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"mnist: {images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"mnist: {labels_path} has label {int(labels.max())}, expected labels 0..9")
    return ArrayDataset(images[:, None], labels.astype(np.int64), classes=CLASSES)
