"""Batch-wise image transforms on (N, C, H, W) arrays, torchvision's names and arguments.

Each transform works on a whole batch at once; random ones draw one decision per image.

Randomness: ``t(x, rng=generator)`` uses ``generator``; without it, the generator given at
construction (``generator=``: a ``np.random.Generator`` or an int seed); without that, the library
generator (``atrous.manual_seed``). A ``DataLoader`` passes its own transform generator, which
its ``state_dict()`` saves, so a resumed run draws the same crops and flips. A transform used on
its own is resumed by saving ``t.generator.bit_generator.state`` and assigning it back.
"""
from __future__ import annotations

import numbers

import numpy as np

from .._validate import check_float, check_rank
from ..shape import pair


class Transform:
    """Base class: ``__call__(x, rng=None)`` maps an (N, C, H, W) batch to a batch."""

    def __init__(self, generator=None):
        if generator is not None and not isinstance(generator, np.random.Generator):
            generator = np.random.default_rng(generator)
        self.generator = generator

    def _rng(self, rng):
        if rng is not None:
            return rng
        if self.generator is not None:
            return self.generator
        from ..random import default_generator

        return default_generator()

    def __call__(self, x, rng=None):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Compose(Transform):
    """Apply ``transforms`` in order; ``rng`` is passed on to each ``Transform`` among them.

    >>> t = Compose([ToFloat(), Normalize([0.5], [0.25])])
    """

    def __init__(self, transforms):
        super().__init__()
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {type(t).__name__}")

    def __call__(self, x, rng=None):
        for t in self.transforms:
            x = t(x, rng=rng) if isinstance(t, Transform) else t(x)
        return x

    def __repr__(self):
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class ToFloat(Transform):
    """Unsigned-integer images (e.g. raw uint8) to floats in [0, 1]; float images just cast.

    Shape: any; dtype: ``dtype`` (float32 by default).

    >>> ToFloat()(np.array([0, 255], dtype=np.uint8))
    array([0., 1.], dtype=float32)
    """

    def __init__(self, dtype=np.float32):
        super().__init__()
        self.dtype = np.dtype(dtype)
        if not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"ToFloat: dtype must be a floating-point type, got {self.dtype}")

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.unsignedinteger):
            return x.astype(self.dtype) / self.dtype.type(np.iinfo(x.dtype).max)
        if np.issubdtype(x.dtype, np.floating):
            return x.astype(self.dtype, copy=False)
        raise TypeError(f"ToFloat: expected unsigned-integer or float images, got dtype {x.dtype}")

    def __repr__(self):
        return f"ToFloat(dtype={self.dtype})"


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel, in the dtype of ``x``.

    Shape: x (N, C, H, W) float; mean and std have C entries (or 1, shared by all channels).

    >>> Normalize([0.5], [0.5])(np.ones((2, 1, 3, 3), np.float32))[0, 0, 0, 0].item()
    1.0
    """

    def __init__(self, mean, std):
        super().__init__()
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError(
                f"Normalize: mean and std must be 1-D, got shapes {self.mean.shape}, {self.std.shape}"
            )
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {self.std.tolist()}")

    def __call__(self, x, rng=None):
        check_rank("Normalize", "x", x, 4)
        check_float("Normalize", "x", x)
        C = x.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, C):
                raise ValueError(
                    f"Normalize: {name} has {v.size} entries but x has {C} channels (shape {x.shape})"
                )
        mean = self.mean.astype(x.dtype).reshape(1, -1, 1, 1)
        std = self.std.astype(x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _padding4(padding):
    """torchvision's padding forms -> (left, top, right, bottom)."""
    if isinstance(padding, numbers.Integral):
        p = (int(padding),) * 4
    else:
        p = tuple(int(v) for v in padding)
        if len(p) == 2:  # (left/right, top/bottom)
            p = (p[0], p[1], p[0], p[1])
        elif len(p) != 4:
            raise ValueError(
                f"RandomCrop: padding must be an int or a sequence of 2 or 4 ints, got {padding!r}"
            )
    if any(v < 0 for v in p):
        raise ValueError(f"RandomCrop: padding must be >= 0, got {padding!r}")
    return p


_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


class RandomCrop(Transform):
    """Pad every image, then cut a ``size`` window at a random offset chosen per image.

    padding: int, (left/right, top/bottom) or (left, top, right, bottom); padding_mode:
    'constant' (with ``fill``), 'edge', 'reflect' or 'symmetric' (torchvision's meanings).
    pad_if_needed: pad both sides further when the padded image is smaller than ``size``.
    Offsets are drawn as ``i = rng.integers(0, H' - h + 1, size=N)`` (rows) and then
    ``j = rng.integers(0, W' - w + 1, size=N)`` (columns), H', W' the padded size.

    Shape: (N, C, H, W) -> (N, C, h, w) with ``(h, w) = pair(size)``.

    >>> RandomCrop(32, padding=4)(np.zeros((8, 3, 32, 32), np.float32)).shape
    (8, 3, 32, 32)
    """

    def __init__(
        self, size, padding=0, pad_if_needed=False, fill=0, padding_mode="constant", generator=None
    ):
        super().__init__(generator)
        self.size = pair(size, "size", "RandomCrop")
        if any(s < 1 for s in self.size):
            raise ValueError(f"RandomCrop: size must be >= 1, got {size!r}")
        self.padding = _padding4(0 if padding is None else padding)
        if padding_mode not in _PAD_MODES:
            raise ValueError(
                f"RandomCrop: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        self.pad_if_needed = bool(pad_if_needed)
        self.fill = fill

    def _pad(self, x):
        left, top, right, bottom = self.padding
        h, w = self.size
        if self.pad_if_needed:
            dh = max(0, h - (x.shape[2] + top + bottom))
            dw = max(0, w - (x.shape[3] + left + right))
            top, bottom, left, right = top + dh, bottom + dh, left + dw, right + dw
        if not any((left, top, right, bottom)):
            return x
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        if self.padding_mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=self.fill)
        return np.pad(x, widths, mode=_PAD_MODES[self.padding_mode])

    def __call__(self, x, rng=None):
        check_rank("RandomCrop", "x", x, 4)
        rng = self._rng(rng)
        xp = self._pad(np.asarray(x))
        N, C, H, W = xp.shape
        h, w = self.size
        if h > H or w > W:
            raise ValueError(
                f"RandomCrop: crop size {(h, w)} is larger than the padded image {(H, W)} "
                f"(input {tuple(x.shape[2:])}, padding {self.padding})"
            )
        i = rng.integers(0, H - h + 1, size=N)
        j = rng.integers(0, W - w + 1, size=N)
        # windows[n, c, a, b] is the (h, w) window whose top-left corner is (a, b): a view, no copy.
        windows = np.lib.stride_tricks.sliding_window_view(xp, (h, w), axis=(2, 3))
        # Advanced indices on axes 0, 2, 3 pick one window per image -> (N, C, h, w), one gather.
        return windows[np.arange(N), :, i, j]

    def __repr__(self):
        return (
            f"RandomCrop(size={self.size}, padding={self.padding}, "
            f"padding_mode={self.padding_mode!r}, fill={self.fill})"
        )


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p`` (``rng.random(N) < p`` decides).

    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, p=0.5, generator=None):
        super().__init__(generator)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x, rng=None):
        check_rank("RandomHorizontalFlip", "x", x, 4)
        flip = self._rng(rng).random(x.shape[0]) < self.p
        out = np.array(x, copy=True)
        out[flip] = out[flip][..., ::-1]
        return out

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"
