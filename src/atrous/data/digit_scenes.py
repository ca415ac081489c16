"""Digit scenes: real handwritten digits pasted on a canvas, with a label for every pixel.

A small, honest segmentation problem built from the bundled digits (``atrous.data.digits``):
each scene is a ``size x size`` black canvas holding a few digits at random places and
scales, and its mask names, for every pixel, the digit whose stroke covers it or background.

How a scene is made (all draws from one seeded generator, so a seed gives the same scenes):

* the number of digits is drawn from ``n_digits`` (an int, or an inclusive (low, high) range);
* each digit is a sample of the split's digits (train scenes use only train-split digits,
  test scenes only test-split digits, so a test scene shows handwriting never trained on),
  resized from 8x8 to ``s x s`` with ``s`` drawn from ``digit_size`` (inclusive, in pixels)
  by bilinear interpolation (PyTorch's ``interpolate(mode='bilinear', align_corners=False)``);
* it is placed at a random position where its ``s x s`` box overlaps no earlier box (boxes
  may touch). Overlap rule: if no free position is found in ``max_tries`` draws, the digit is
  left out, so a crowded scene may hold fewer digits than drawn (``boxes`` lists what is
  there; with the defaults this is rare);
* mask: stroke pixels (resized intensity > ``threshold``) get the digit's class; everything
  else is background.

Classes: a digit keeps its own value as its class (mask value 3 is the digit 3) and
background is class 10 (:data:`BACKGROUND`), as in ``atrous.detection``; 11 classes in all,
named by :data:`CLASSES`.
"""
from __future__ import annotations

import numbers

import numpy as np

from .dataset import TensorDataset

__all__ = ["digit_scenes", "DigitScenes", "compose_scene", "resize_bilinear", "BACKGROUND",
           "NUM_CLASSES", "CLASSES"]

BACKGROUND = 10
NUM_CLASSES = 11
CLASSES = [str(d) for d in range(10)] + ["background"]
_DEFAULT_SCENES = {"train": 2000, "test": 400}
_SPLIT_KEY = {"train": 0, "test": 1}  # train and test scenes come from different streams


class DigitScenes(TensorDataset):
    """Scenes and their masks: ``dataset[i]`` is ``(image, mask)``.

    images: (N, 1, S, S) float32 in [0, 1]; masks: (N, S, S) int64 in 0..10 (10 = background);
    boxes: a list of N int64 arrays (K_i, 5), one row per digit placed,
    (class, top, left, side, source) with source the digit's index in
    ``sklearn.datasets.load_digits()``; classes: the 11 class names.
    """

    def __init__(self, images, masks, boxes, split=None, seed=None):
        super().__init__(images, masks)
        self.boxes = boxes
        self.classes = list(CLASSES)
        self.num_classes = NUM_CLASSES
        self.background = BACKGROUND
        self.split, self.seed = split, seed

    @property
    def images(self):
        return self.arrays[0]

    @property
    def masks(self):
        return self.arrays[1]

    @property
    def sources(self):
        """Indices (in ``load_digits()``) of every digit used, over all scenes."""
        return np.concatenate([b[:, 4] for b in self.boxes]) if self.boxes else np.zeros(0, np.int64)

    def __repr__(self):
        return (f"DigitScenes(split={self.split!r}, images={self.images.shape}, "
                f"masks={self.masks.shape}, digits={sum(len(b) for b in self.boxes)})")


def _bilinear_matrix(n_in, n_out):
    """(n_out, n_in) matrix A with A @ v = v resized by PyTorch's bilinear rule (one axis).

    align_corners=False: output pixel i samples input coordinate (i + 0.5) * n_in / n_out - 0.5,
    clamped at 0 below; it mixes the two nearest input pixels (the upper one clamped to n_in - 1).
    """
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    A = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(A, (rows, i0), 1.0 - w1)
    np.add.at(A, (rows, i1), w1)
    return A


def resize_bilinear(image, size):
    """Resize a 2-D image to ``size`` (int or (h, w)) as PyTorch's bilinear, align_corners=False.

    Separable: ``A_h @ image @ A_w.T`` with the one-axis interpolation matrices.

    Shape: (H, W) -> (h, w), float32 for float32 input.

    >>> resize_bilinear(np.eye(2, dtype=np.float32), 4).round(3)[0]
    array([1.  , 0.75, 0.25, 0.  ], dtype=float32)
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"resize_bilinear: image must be 2-D (H, W), got shape {image.shape}")
    h, w = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    out = _bilinear_matrix(image.shape[0], h) @ image.astype(np.float64) @ _bilinear_matrix(image.shape[1], w).T
    return out.astype(image.dtype if image.dtype.kind == "f" else np.float32)


def _range(name, value):
    lo, hi = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    if not (isinstance(lo, numbers.Integral) and isinstance(hi, numbers.Integral)) or lo > hi or lo < 0:
        raise ValueError(f"digit_scenes: {name} must be an int or an inclusive (low, high) range of "
                         f"ints with 0 <= low <= high, got {value!r}")
    return int(lo), int(hi)


def compose_scene(images, labels, rng, size=64, n_digits=(2, 5), digit_size=(12, 20),
                  threshold=0.3, sources=None, max_tries=100):
    """One scene from ``images`` (M, 1, 8, 8) / ``labels`` (M,), drawing from ``rng``.

    Returns (image (size, size) float32, mask (size, size) int64, boxes (K, 5) int64), boxes as
    in :class:`DigitScenes`. See the module docstring for the rules.
    """
    images = np.asarray(images, np.float32).reshape(len(images), *np.shape(images)[-2:])
    ids = np.arange(len(images)) if sources is None else np.asarray(sources)
    canvas = np.zeros((size, size), np.float32)
    mask = np.full((size, size), BACKGROUND, np.int64)
    k = int(rng.integers(n_digits[0], n_digits[1] + 1))
    picks = rng.choice(len(images), size=k, replace=False)
    sides = rng.integers(digit_size[0], digit_size[1] + 1, size=k)
    boxes = []
    for p, s in zip(picks, sides):
        s = int(min(s, size))
        for _ in range(max_tries):
            y, x = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
            # Two boxes are disjoint when one ends before the other starts along some axis.
            if all(y + s <= t or t + q <= y or x + s <= l or l + q <= x for _, t, l, q, _ in boxes):
                break
        else:
            continue  # no room left: leave this digit out
        digit = np.clip(resize_bilinear(images[p], s), 0.0, 1.0)
        canvas[y:y + s, x:x + s] = digit
        mask[y:y + s, x:x + s][digit > threshold] = labels[p]
        boxes.append((int(labels[p]), y, x, s, int(ids[p])))
    return canvas, mask, np.array(boxes, np.int64).reshape(-1, 5)


def digit_scenes(split="train", size=64, n_digits=(2, 5), n_scenes=None, seed=0,
                 digit_size=(12, 20), threshold=0.3):
    """Segmentation scenes of real handwritten digits, train or test split.

    split: 'train' composes train-split digits of ``atrous.data.digits``, 'test' only
    test-split digits (never mixed). size: canvas side in pixels. n_digits: digits per scene,
    an int or an inclusive (low, high) range. n_scenes: how many scenes (default 2000 for
    train, 400 for test). seed: fixes every draw; train and test use separate streams of it.
    digit_size: side of a pasted digit in pixels, int or inclusive range (the 8x8 digits are
    upsampled bilinearly). threshold: intensity above which a pixel is stroke (labelled).

    Shape: images (N, 1, size, size) float32 in [0, 1]; masks (N, size, size) int64, a digit's
    value on its stroke pixels and 10 (background) elsewhere.

    >>> ds = digit_scenes("test", size=32, n_digits=2, n_scenes=3, digit_size=10)
    >>> ds.images.shape, ds.masks.shape, sorted(set(ds.masks.ravel().tolist()))[-1]
    ((3, 1, 32, 32), (3, 32, 32), 10)
    """
    from .digits import digits

    if split not in _SPLIT_KEY:
        raise ValueError(f"digit_scenes: split must be 'train' or 'test', got {split!r}")
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"digit_scenes: size must be a positive int, got {size!r}")
    n_digits = _range("n_digits", n_digits)
    digit_size = _range("digit_size", digit_size)
    if digit_size[0] < 1 or digit_size[1] > size:
        raise ValueError(f"digit_scenes: digit_size {digit_size} must lie in [1, size={size}]")
    n_scenes = _DEFAULT_SCENES[split] if n_scenes is None else n_scenes
    if not isinstance(n_scenes, numbers.Integral) or n_scenes < 0:
        raise ValueError(f"digit_scenes: n_scenes must be a non-negative int, got {n_scenes!r}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"digit_scenes: threshold must be in [0, 1), got {threshold}")
    source = digits(split)
    if n_digits[1] > len(source):
        raise ValueError(f"digit_scenes: up to {n_digits[1]} digits per scene requested from only "
                         f"{len(source)} {split} digits")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_KEY[split]]))
    images = np.zeros((n_scenes, 1, size, size), np.float32)
    masks = np.zeros((n_scenes, size, size), np.int64)
    boxes = []
    for i in range(n_scenes):  # composing is a one-off cost (about 0.1 ms per scene)
        images[i, 0], masks[i], b = compose_scene(source.images, source.labels, rng, size, n_digits,
                                                  digit_size, threshold, source.indices)
        boxes.append(b)
    return DigitScenes(images, masks, boxes, split=split, seed=seed)
