"""Segmentation metrics from a confusion matrix: pixel accuracy, per-class and mean IoU.

Everything derives from the K x K confusion matrix ``cm`` (rows: true class, columns:
predicted class, as ``sklearn.metrics.confusion_matrix``), counted over all pixels except
those whose target is ``ignore_index``:

- pixel accuracy = trace(cm) / cm.sum()
- IoU of class c = cm[c, c] / (row c + column c - cm[c, c]) = TP / (TP + FP + FN);
  NaN for a class that is neither in the targets nor in the predictions (0 / 0), so it is
  left out of the mean instead of counting as 0 or 1
- mean IoU = nanmean over classes; class accuracy (recall) = cm[c, c] / row c, NaN if absent.

Metrics over a dataset add the confusion matrices of its batches (``SegmentationMetrics``):
a mean of per-image IoUs would weight small images and rare classes differently.

>>> import numpy as np
>>> target = np.array([[0, 0, 1, 1]])
>>> pred = np.array([[0, 1, 1, 1]])
>>> confusion_matrix(pred, target, num_classes=3)
array([[1, 1, 0],
       [0, 2, 0],
       [0, 0, 0]])
>>> iou_per_class(confusion_matrix(pred, target, 3))      # class 2 absent: NaN
array([0.5       , 0.66666667,        nan])
>>> round(float(mean_iou(pred, target, num_classes=3)), 4)
0.5833
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .tensor import Tensor

__all__ = [
    "confusion_matrix",
    "pixel_accuracy",
    "iou_per_class",
    "mean_iou",
    "class_accuracy",
    "SegmentationMetrics",
]


def _labels(x):
    if isinstance(x, dict):
        x = x["out"]  # a segmentation model's output
    x = x.data if isinstance(x, Tensor) else x
    xp = get_array_module(x) if hasattr(x, "dtype") else np
    return xp.asarray(x)


def _predicted(pred, target, op):
    """Labels from ``pred``: integer labels as given, or the argmax over dim 1 of scores
    (N, K, H, W) whose target is (N, H, W)."""
    pred = _labels(pred)
    xp = get_array_module(pred)
    if pred.ndim == target.ndim + 1:
        return xp.argmax(pred, axis=1)
    if pred.shape != target.shape:
        raise ValueError(
            f"{op}: pred must have the target's shape (labels) or one more axis at dim 1 "
            f"(scores), got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    if pred.dtype.kind not in "iub":
        raise TypeError(f"{op}: pred labels must be integers, got dtype {pred.dtype}")
    return pred


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """Count (true, predicted) pairs: ``cm[t, p]`` = number of pixels of class t predicted p.

    ``pred``: integer labels of ``target``'s shape, or scores (N, K, ...) with one more axis
    at dim 1 (argmax is taken), or a model's output dict (its ``'out'``). ``target``: integer
    labels in [0, num_classes) or ``ignore_index`` (those pixels are not counted).
    One ``bincount`` over ``t * K + p``: no loop over pixels or classes.

    Shape: pred (N, ...) or (N, K, ...), target (N, ...) -> (num_classes, num_classes) int64.

    >>> confusion_matrix(np.array([1, 1, 0]), np.array([1, 0, 255]), 2, ignore_index=255)
    array([[0, 1],
           [0, 1]])
    """
    op = "confusion_matrix"
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"{op}: num_classes must be a positive integer, got {num_classes!r}")
    K = int(num_classes)
    target = _labels(target)
    if target.dtype.kind not in "iub":
        raise TypeError(f"{op}: target labels must be integers, got dtype {target.dtype}")
    pred = _predicted(pred, target, op)
    xp = get_array_module(target)
    t = target.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    for name, v in (("target", t), ("pred", p)):
        if v.size and (int(v.min()) < 0 or int(v.max()) >= K):
            bad = int(v.min()) if int(v.min()) < 0 else int(v.max())
            extra = f" or ignore_index={ignore_index}" if name == "target" else ""
            raise ValueError(
                f"{op}: {name} holds label {bad}, outside [0, {K}) (num_classes={K}){extra}"
            )
    return xp.bincount(t * K + p, minlength=K * K).reshape(K, K)


def _confusion(args, kwargs, op):
    """A confusion matrix given as one (K, K) argument, or built from (pred, target, K, ...)."""
    if len(args) == 1 and not kwargs:
        cm = np.asarray(args[0])
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(
                f"{op}: expected a square confusion matrix (or pred, target, num_classes), "
                f"got shape {cm.shape}"
            )
        return cm
    return np.asarray(confusion_matrix(*args, **kwargs))


def pixel_accuracy(*args, **kwargs):
    """Fraction of counted pixels labelled correctly: trace(cm) / cm.sum() (NaN if none).

    Call with a confusion matrix, or with ``(pred, target, num_classes, ignore_index=None)``.
    """
    cm = _confusion(args, kwargs, "pixel_accuracy")
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def iou_per_class(*args, **kwargs):
    """Intersection over union per class, TP / (TP + FP + FN); NaN where the class is in
    neither targets nor predictions. Same arguments as :func:`pixel_accuracy`.

    Shape: -> (K,) float64.
    """
    cm = _confusion(args, kwargs, "iou_per_class").astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(*args, **kwargs):
    """Mean of :func:`iou_per_class` over the classes that occur (NaN-aware); NaN if none."""
    iou = iou_per_class(*args, **kwargs)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")


def class_accuracy(*args, **kwargs):
    """Per-class recall cm[c, c] / (pixels of class c); NaN for classes absent from targets.

    Shape: -> (K,) float64.
    """
    cm = _confusion(args, kwargs, "class_accuracy").astype(np.float64)
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.where(rows > 0, rows, 1), np.nan)


class SegmentationMetrics:
    """Streaming accumulator: add batches with ``update(pred, target)``, read ``compute()``.

    ``pred`` is anything :func:`confusion_matrix` takes (labels, scores (N, K, H, W) or a
    model's output dict); the counts of every batch add into ``confusion`` (K x K int64), so
    the result equals the metrics of all pixels at once.

    >>> m = SegmentationMetrics(num_classes=2)
    >>> m.update(np.array([[0, 1]]), np.array([[0, 1]]))
    >>> m.update(np.array([[1, 1]]), np.array([[0, 1]]))
    >>> m.compute()["pixel_accuracy"]
    0.75
    """

    def __init__(self, num_classes, ignore_index=None, class_names=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise ValueError(
                f"SegmentationMetrics: num_classes must be a positive integer, got {num_classes!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"SegmentationMetrics: {len(class_names)} class_names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self):
        """Forget every batch seen so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target):
        """Add one batch's counts."""
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.confusion += np.asarray(cm, dtype=np.int64)

    def compute(self):
        """``{'pixel_accuracy', 'mean_iou', 'mean_accuracy': float, 'iou', 'accuracy':
        list of K floats (NaN for absent classes), 'pixels': counted pixels}``."""
        iou = iou_per_class(self.confusion)
        acc = class_accuracy(self.confusion)
        present = ~np.isnan(acc)
        return {
            "pixel_accuracy": pixel_accuracy(self.confusion),
            "mean_iou": mean_iou(self.confusion),
            "mean_accuracy": float(acc[present].mean()) if present.any() else float("nan"),
            "iou": [float(v) for v in iou],
            "accuracy": [float(v) for v in acc],
            "pixels": int(self.confusion.sum()),
        }

    def __str__(self):
        r = self.compute()
        names = self.class_names or [str(c) for c in range(self.num_classes)]
        width = max(5, *(len(n) for n in names))
        lines = [f"pixel accuracy {r['pixel_accuracy']:.4f}  mean IoU {r['mean_iou']:.4f}  "
                 f"mean class accuracy {r['mean_accuracy']:.4f}",
                 f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}"]
        for name, i, a in zip(names, r["iou"], r["accuracy"]):
            lines.append(f"{name:<{width}}  {i:6.4f}  {a:6.4f}")
        return "\n".join(lines)
