"""The handwritten digits that scikit-learn ships (UCI optdigits test set: 1797 images, 8x8)."""
from __future__ import annotations

import functools

import numpy as np

from .dataset import ArrayDataset

CLASSES = [str(d) for d in range(10)]


@functools.lru_cache(maxsize=1)
def _load():
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # scikit-learn is an optional extra
        raise ImportError(
            "digits: the bundled digits come with scikit-learn; install it with "
            "pip install 'atrous[data]' (or pip install scikit-learn)"
        ) from e
    bunch = load_digits()
    # Pixels are counts 0..16 (an 8x8 grid of 4x4-block sums); scale them to [0, 1].
    images = (bunch.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # the cache is shared; copies go out
    return images, labels


def _split_indices(labels, test_fraction, seed):
    """Stratified split: in each class, a seeded shuffle puts round(fraction * count) in test."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(test_fraction * members.size))
        test.append(rng.permutation(members)[:k])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(labels.size), test)
    return train, test


def digits(split="train", test_fraction=0.2, seed=0):
    """The scikit-learn digits as an ``ArrayDataset``, split into train and test.

    The split is stratified by class and fixed by ``seed``: the same arguments give the same
    samples on every call, and train and test never share a sample (each class contributes
    ``round(test_fraction * count)`` images to test). Samples keep their original order;
    ``.indices`` holds their positions in ``sklearn.datasets.load_digits()``.

    Shape: images (N, 1, 8, 8) float32 in [0, 1]; labels (N,) int64 in 0..9. With the defaults,
    1438 train and 359 test images (of 1797).

    >>> train, test = digits("train"), digits("test")
    >>> train.images.shape[1:], len(train) + len(test)
    ((1, 8, 8), 1797)
    """
    if split not in ("train", "test"):
        raise ValueError(f"digits: split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits: test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = _load()
    train, test = _split_indices(labels, test_fraction, seed)
    idx = train if split == "train" else test
    ds = ArrayDataset(images[idx], labels[idx], classes=CLASSES)
    ds.indices = idx  # positions in sklearn's load_digits(), for tracing a sample back
    return ds
