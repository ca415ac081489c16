"""``DataLoader``: batches of NumPy arrays, seeded shuffling, and a resumable position."""
from __future__ import annotations

import copy
import numbers

import numpy as np

from .transforms import Transform

_STATE_KEYS = ("epoch", "position", "num_samples", "batch_size", "shuffle_generator", "transform_generator")


class DataLoader:
    """Iterate over ``dataset`` in batches; each batch is a tuple of NumPy arrays.

    One ``for batch in loader`` is one epoch. With ``shuffle=True`` every epoch draws a new
    permutation from the loader's own ``np.random.Generator``, seeded by ``seed`` or, when
    ``seed`` is None, by a number drawn from ``atrous.random.default_generator()`` at
    construction (so ``atrous.manual_seed`` makes a run reproducible). ``transform`` is applied to
    the first array of each batch (the images); an ``atrous.data.transforms.Transform`` is handed
    the loader's second generator (``rng=``), so its random draws are part of the loader's state.

    Batches are fetched with ``dataset.get_batch(indices)`` when the dataset has it (one fancy
    index per array for ``TensorDataset``/``ArrayDataset``), otherwise by stacking ``dataset[i]``.

    Resuming: ``state_dict()`` (JSON-serialisable) records the epoch, the position inside it and
    both generators; ``load_state_dict`` on a loader over the same dataset makes the next
    iteration yield exactly the batches the uninterrupted loader would have yielded.

    Shape: a dataset of N samples gives ``len(loader) = N // batch_size`` batches with
    ``drop_last=True``, ``ceil(N / batch_size)`` otherwise (the last one may be smaller).

    >>> from atrous.data import TensorDataset
    >>> loader = DataLoader(TensorDataset(np.zeros((10, 1, 8, 8)), np.arange(10)), batch_size=4)
    >>> [x.shape[0] for x, y in loader]
    [4, 4, 2]
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, transform=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {type(transform).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        if seed is None:
            from ..random import default_generator

            seed = int(default_generator().integers(0, 2**63 - 1))
        self.seed = int(seed)
        # Two independent streams, so adding a transform never changes the shuffling order.
        shuffle_seq, transform_seq = np.random.SeedSequence(self.seed).spawn(2)
        self.generator = np.random.Generator(np.random.PCG64(shuffle_seq))
        self.transform_generator = np.random.Generator(np.random.PCG64(transform_seq))
        self.epoch = 0  # epochs completed
        self._epoch_start_state = None  # shuffle generator state before this epoch's permutation
        self._position = 0  # batches of the current epoch already yielded
        self._in_epoch = False
        self._resume_position = None

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _fetch(self, indices):
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is not None:
            batch = tuple(get_batch(indices))
        else:
            from .dataset import _stack_items

            batch = _stack_items([self.dataset[int(i)] for i in indices])
        if self.transform is not None:
            if isinstance(self.transform, Transform):
                images = self.transform(batch[0], rng=self.transform_generator)
            else:
                images = self.transform(batch[0])
            batch = (images,) + batch[1:]
        return batch

    def __iter__(self):
        n = len(self.dataset)
        start = self._resume_position or 0
        self._resume_position = None
        self._epoch_start_state = copy.deepcopy(self.generator.bit_generator.state)
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        self._position = start
        self._in_epoch = True
        for b in range(start, len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = self._fetch(indices)
            self._position = b + 1
            yield batch
        self._in_epoch = False
        self._position = 0
        self.epoch += 1

    def state_dict(self):
        """The loader's position and generator states, as plain JSON-serialisable values."""
        mid_epoch = self._in_epoch and self._position < len(self)
        if self._resume_position is not None:
            # Loaded but not iterated yet: the generator still stands at the epoch's start.
            epoch, position = self.epoch, self._resume_position
            shuffle_state = self.generator.bit_generator.state
        elif mid_epoch:
            # Restart the epoch from the generator state that drew its permutation.
            epoch, position, shuffle_state = self.epoch, self._position, self._epoch_start_state
        else:
            # At a boundary (also right after the last batch): the next epoch starts fresh.
            epoch = self.epoch + (1 if self._in_epoch else 0)
            position, shuffle_state = 0, self.generator.bit_generator.state
        return {
            "epoch": epoch,
            "position": position,
            "num_samples": len(self.dataset),
            "batch_size": self.batch_size,
            "shuffle_generator": copy.deepcopy(shuffle_state),
            "transform_generator": copy.deepcopy(self.transform_generator.bit_generator.state),
        }

    def load_state_dict(self, state):
        """Restore a ``state_dict()``; the next iteration continues where that loader stood."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state is missing keys {missing}")
        if state["num_samples"] != len(self.dataset) or state["batch_size"] != self.batch_size:
            raise ValueError(
                "DataLoader.load_state_dict: the state was saved for "
                f"{state['num_samples']} samples in batches of {state['batch_size']}, but this loader "
                f"has {len(self.dataset)} samples in batches of {self.batch_size}"
            )
        if not 0 <= state["position"] <= len(self):
            raise ValueError(
                f"DataLoader.load_state_dict: position {state['position']} is outside [0, {len(self)}]"
            )
        self.generator.bit_generator.state = copy.deepcopy(state["shuffle_generator"])
        self.transform_generator.bit_generator.state = copy.deepcopy(state["transform_generator"])
        self.epoch = int(state["epoch"])
        self._resume_position = int(state["position"])
        self._in_epoch = False
        self._position = 0
