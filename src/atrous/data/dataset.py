"""Datasets: the map-style protocol (``__getitem__`` + ``__len__``) and array-backed datasets.

A dataset may also offer ``get_batch(indices) -> tuple of arrays``; the ``DataLoader`` uses it
to fetch a whole batch with one fancy index per array instead of stacking items one by one.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..tensor import Tensor


def _stack_items(items):
    """Stack a list of items (each an array, scalar or tuple of them) into a tuple of batches."""
    if not items:
        raise ValueError("get_batch: cannot build a batch from zero items")
    if isinstance(items[0], (tuple, list)):
        fields = len(items[0])
        return tuple(np.stack([np.asarray(item[k]) for item in items]) for k in range(fields))
    return (np.stack([np.asarray(item) for item in items]),)


class Dataset:
    """A map-style dataset: ``dataset[i]`` is one sample, ``len(dataset)`` the number of samples.

    Subclasses implement ``__getitem__`` and ``__len__``; ``get_batch`` stacks the items of a
    batch and may be overridden with something faster.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def get_batch(self, indices):
        """Samples ``indices`` as a tuple of arrays, each with the batch as its first axis."""
        return _stack_items([self[int(i)] for i in indices])


class TensorDataset(Dataset):
    """Samples are slices along the first axis of the given arrays (NumPy arrays or Tensors).

    ``dataset[i]`` is ``tuple(a[i] for a in arrays)``; Tensors are stored as their arrays.

    >>> ds = TensorDataset(np.zeros((5, 1, 8, 8)), np.arange(5))
    >>> len(ds), int(ds[2][1])
    (5, 2)
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array")
        arrays = tuple(a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays)
        for k, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {k} is 0-D; every array needs a first (sample) axis")
        sizes = [a.shape[0] for a in arrays]
        if len(set(sizes)) > 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(
                f"TensorDataset: all arrays must have the same first dimension, got sizes {sizes} "
                f"(shapes {shapes})"
            )
        self.arrays = arrays

    @property
    def tensors(self):
        """PyTorch's name for the stored arrays."""
        return self.arrays

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices):
        indices = np.asarray(indices, dtype=np.intp)
        return tuple(a[indices] for a in self.arrays)


class ArrayDataset(TensorDataset):
    """Images and integer labels held in memory, with the class names.

    images: (N, C, H, W), float32 in [0, 1] or raw uint8 (see the loader that made it);
    labels: (N,) int64; classes: list of names, ``classes[label]``.
    """

    def __init__(self, images, labels, classes=None):
        images = images.data if isinstance(images, Tensor) else np.asarray(images)
        labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"ArrayDataset: images must be 4-D (N, C, H, W), got shape {images.shape}")
        if labels.ndim != 1:
            raise ValueError(f"ArrayDataset: labels must be 1-D (N,), got shape {labels.shape}")
        super().__init__(images, labels.astype(np.int64, copy=False))
        self.classes = list(classes) if classes is not None else None

    @property
    def images(self):
        return self.arrays[0]

    @property
    def labels(self):
        return self.arrays[1]

    def __repr__(self):
        return (
            f"ArrayDataset(images={self.images.shape} {self.images.dtype}, "
            f"labels={self.labels.shape}, classes={len(self.classes) if self.classes else None})"
        )


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.intp)
        n = len(dataset)
        if self.indices.ndim != 1:
            raise ValueError(f"Subset: indices must be 1-D, got shape {self.indices.shape}")
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise ValueError(
                f"Subset: indices must lie in [0, {n}) for a dataset of {n} samples, got range "
                f"[{self.indices.min()}, {self.indices.max()}]"
            )

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices):
        inner = self.indices[np.asarray(indices, dtype=np.intp)]
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is not None:
            return get_batch(inner)
        return _stack_items([self.dataset[int(i)] for i in inner])


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping ``Subset``s of the given lengths (or fractions).

    Fractions summing to 1 are turned into counts, the remainder given one by one to the first
    splits (PyTorch's rule). ``generator``: a ``np.random.Generator`` or an int seed; by default
    the library generator (``atrous.manual_seed``).
    """
    from ..random import default_generator

    n = len(dataset)
    lengths = list(lengths)
    if all(isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) for x in lengths):
        if not math.isclose(sum(lengths), 1.0) or any(x < 0 for x in lengths):
            raise ValueError(f"random_split: fractions must be >= 0 and sum to 1, got {lengths}")
        counts = [int(math.floor(n * f)) for f in lengths]
        for k in range(n - sum(counts)):
            counts[k % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n or any(x < 0 for x in lengths):
        raise ValueError(
            f"random_split: lengths {lengths} must be >= 0 and sum to the dataset size {n}"
        )
    if generator is None:
        generator = default_generator()
    elif not isinstance(generator, np.random.Generator):
        generator = np.random.default_rng(generator)
    order = generator.permutation(n)
    bounds = np.cumsum([0] + lengths)
    return [Subset(dataset, order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
