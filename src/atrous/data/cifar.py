"""CIFAR-10 from the binary batches (the "binary version" of the official download).

Each file is a run of 3073-byte records: one label byte (0..9), then 3072 pixel bytes, the
1024 red, then 1024 green, then 1024 blue values of a 32x32 image, rows top to bottom —
that is CHW order, so a record reshapes straight to (3, 32, 32).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import ArrayDataset

RECORD = 1 + 3 * 32 * 32
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FILES = {
    "train": [f"data_batch_{k}.bin" for k in range(1, 6)],
    "test": ["test_batch.bin"],
}
SUBFOLDER = "cifar-10-batches-bin"  # what the official archive unpacks to


def _folder(root, names):
    """``root/cifar-10-batches-bin`` or ``root``, whichever holds every file in ``names``."""
    root = Path(root)
    candidates = (root / SUBFOLDER, root)
    for folder in candidates:
        if all((folder / n).is_file() for n in names):
            return folder
    missing = [str(folder / n) for folder in candidates for n in names if not (folder / n).is_file()]
    raise FileNotFoundError(
        f"cifar10: cannot find the batch files {names} in {candidates[0]} or {candidates[1]}; "
        f"missing: {', '.join(missing)}"
    )


def read_batch(path):
    """One binary batch file -> (images (n, 3, 32, 32) uint8, labels (n,) int64), checked."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise ValueError(
            f"cifar10: {path} has {raw.size} bytes, expected a non-zero multiple of {RECORD} "
            f"(1 label byte + 3072 pixel bytes per image); the file is truncated or not a CIFAR-10 batch"
        )
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise ValueError(
            f"cifar10: {path} record {bad[0]} has label {labels[bad[0]]}, expected 0..9 "
            f"({bad.size} bad labels; is this a CIFAR-100 file?)"
        )
    images = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return images, labels


def _classes(folder):
    meta = folder / "batches.meta.txt"
    if not meta.is_file():
        return list(CLASSES)
    names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
    if len(names) != 10:
        raise ValueError(f"cifar10: {meta} lists {len(names)} class names, expected 10")
    return names


def cifar10(root, split="train"):
    """CIFAR-10 as an ``ArrayDataset`` read from ``root`` (or ``root/cifar-10-batches-bin``).

    split 'train' reads ``data_batch_1.bin`` .. ``data_batch_5.bin`` in order, 'test' reads
    ``test_batch.bin``. ``classes`` come from ``batches.meta.txt`` when present.

    Shape: images (N, 3, 32, 32) raw uint8 (``transforms.ToFloat()`` scales a batch to [0, 1]),
    labels (N,) int64 in 0..9; N = 50000 / 10000 for the real files.
    """
    if split not in FILES:
        raise ValueError(f"cifar10: split must be 'train' or 'test', got {split!r}")
    folder = _folder(root, FILES[split])
    parts = [read_batch(folder / name) for name in FILES[split]]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return ArrayDataset(images, labels, classes=_classes(folder))
