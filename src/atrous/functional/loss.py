"""Losses: cross entropy over class indices (with weights, ignore_index, label smoothing),
negative log-likelihood and mean squared error, with PyTorch's reductions.

Class-index losses take input (N, C) or (N, C, d1, ...) (a per-pixel loss for segmentation)
and target (N,) or (N, d1, ...); an unbatched input (C,) takes a 0-D target. 'mean' divides by
the summed weights of the non-ignored targets, not by their count, as PyTorch.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from .._validate import check_float
from ..autograd import Function
from ..backend import get_array_module
from ..ops import unbroadcast
from ..tensor import Tensor, _as_array

__all__ = ["cross_entropy", "nll_loss", "mse_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def _array(x):
    return x.data if isinstance(x, Tensor) else _as_array(x)


def _reduction(op, reduction, size_average, reduce):
    if size_average is not None or reduce is not None:
        # PyTorch's deprecated pair maps onto reduction the same way.
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _check_class_target(op, xa, ta, weight, ignore_index):
    """Validate (input, target, weight) of a class-index loss; returns weight as input's dtype."""
    check_float(op, "input", xa)
    if xa.ndim < 1:
        raise ValueError(f"{op}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-D input")
    if not np.issubdtype(ta.dtype, np.integer):
        raise TypeError(
            f"{op}: target must hold integer class indices, got dtype {ta.dtype} "
            f"(class-probability targets are not supported)"
        )
    want = () if xa.ndim == 1 else (xa.shape[0],) + xa.shape[2:]
    if ta.shape != want:
        raise ValueError(
            f"{op}: target shape {tuple(ta.shape)} does not match input shape {tuple(xa.shape)}; "
            f"expected target shape {want}"
        )
    C = xa.shape[0] if xa.ndim == 1 else xa.shape[1]
    bad = (ta != ignore_index) & ((ta < 0) | (ta >= C))
    if bad.any():
        value = int(ta[bad].reshape(-1)[0])
        raise ValueError(
            f"{op}: target value {value} is out of range for C={C} classes "
            f"(expected 0..{C - 1}, or ignore_index={ignore_index})"
        )
    if weight is None:
        return None
    wa = _array(weight)
    check_float(op, "weight", wa)
    if wa.shape != (C,):
        raise ValueError(
            f"{op}: weight must have shape ({C},), one entry per class of input shape "
            f"{tuple(xa.shape)}, got {tuple(wa.shape)}"
        )
    return wa.astype(xa.dtype, copy=False)


class _ClassLoss(Function):
    """Shared plumbing: batch the unbatched case, pick per-element weights, reduce.

    Subclasses compute ``per_element`` (N, *) losses in forward and the gradient of the
    reduced loss from ``self.coef`` = d(output)/d(per_element), already masked.
    """

    def _setup(self, x, target, weight, ignore_index):
        xp = get_array_module(x)
        self.in_shape = x.shape
        if x.ndim == 1:  # unbatched (C,), target ()
            x, target = x[None], target.reshape(1)
        self.valid = target != ignore_index
        self.t = xp.expand_dims(xp.where(self.valid, target, 0), 1)  # (N, 1, *) for take_along_axis
        dt = x.dtype
        # w[t] for every element, 0 where ignored: both the nll weights and the 'mean' divisor.
        self.wt = (weight[self.t[:, 0]] if weight is not None else xp.ones(self.valid.shape, dt))
        self.wt = self.wt * self.valid.astype(dt)
        return x

    def _reduce(self, per_element, reduction, denom_parts):
        xp = get_array_module(per_element)
        self.reduction = reduction
        if reduction == "none":
            out = per_element
            return out.reshape(()) if len(self.in_shape) == 1 else out
        total = per_element.sum()
        if reduction == "sum":
            return xp.asarray(total, dtype=per_element.dtype)
        self.denom = self.wt.sum()
        with np.errstate(divide="ignore", invalid="ignore"):  # all ignored: 0/0 = nan, as torch
            return xp.asarray(total / self.denom, dtype=per_element.dtype)

    def _coef(self, g):
        """d(output)/d(per-element loss), shaped (N, *)."""
        if self.reduction == "none":
            return g.reshape(self.valid.shape)
        xp = get_array_module(g)
        if self.reduction == "sum":
            return xp.broadcast_to(g, self.valid.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = g / self.denom
        # Ignored elements get exactly 0, even when every target is ignored and a = g/0 (torch).
        return xp.where(self.valid, a, xp.zeros((), a.dtype))


class _NLLLoss(_ClassLoss):
    def forward(self, x, target, weight, ignore_index, reduction):
        x = self._setup(x, target, weight, ignore_index)
        self.x_shape = x.shape
        picked = get_array_module(x).take_along_axis(x, self.t, axis=1)[:, 0]
        return self._reduce(-(self.wt * picked), reduction, None)

    def backward(self, g):
        xp = get_array_module(g)
        gx = xp.zeros(self.x_shape, dtype=g.dtype)
        xp.put_along_axis(gx, self.t, xp.expand_dims(-(self._coef(g) * self.wt), 1), axis=1)
        return gx.reshape(self.in_shape), None


class _CrossEntropy(_ClassLoss):
    """log_softmax over axis 1, then the (smoothed) negative log-likelihood, fused.

    With smoothing e the target distribution per element is q_c = (1-e) [c = t] w_t + e/C w_c
    (w = 1 without weights), so loss = -sum_c q_c logp_c and d loss / dx = softmax * sum(q) - q.
    """

    def forward(self, x, target, weight, ignore_index, reduction, label_smoothing):
        xp = get_array_module(x)
        x = self._setup(x, target, weight, ignore_index)
        dt = x.dtype.type
        C, eps = x.shape[1], label_smoothing
        self.C, self.eps, self.weight = C, eps, weight
        shifted = x - x.max(axis=1, keepdims=True)
        self.logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        loss = -(self.wt * xp.take_along_axis(self.logp, self.t, axis=1)[:, 0])
        if eps > 0:
            wlogp = self.logp if weight is None else self.logp * weight.reshape((1, C) + (1,) * (x.ndim - 2))
            smooth = -wlogp.sum(axis=1) * self.valid.astype(x.dtype)
            loss = dt(1 - eps) * loss + dt(eps / C) * smooth
        return self._reduce(loss, reduction, None)

    def backward(self, g):
        xp = get_array_module(g)
        dt, C, eps = g.dtype.type, self.C, self.eps
        a = self._coef(g)
        valid = self.valid.astype(g.dtype)
        wsum = dt(C) if self.weight is None else self.weight.sum()
        Q = dt(1 - eps) * self.wt + dt(eps / C) * wsum * valid  # sum_c q_c per element
        gx = xp.exp(self.logp) * xp.expand_dims(a * Q, 1)
        if eps > 0:
            wc = 1 if self.weight is None else self.weight.reshape((1, C) + (1,) * (gx.ndim - 2))
            gx -= xp.expand_dims(a * valid * dt(eps / C), 1) * wc
        # The (1-e) w_t share sits at the target class only.
        at_t = xp.take_along_axis(gx, self.t, axis=1)
        xp.put_along_axis(gx, self.t, at_t - xp.expand_dims(a * dt(1 - eps) * self.wt, 1), axis=1)
        return gx.reshape(self.in_shape), None


def _class_inputs(op, input, target, weight, ignore_index):
    xa, ta = _array(input), _array(target)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    w = _check_class_target(op, xa, ta, weight, int(ignore_index))
    return (input if isinstance(input, Tensor) else xa), ta, w


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of class indices: loss_i = -weight[t_i] * input[i, t_i].

    Shape: input (N, C) or (N, C, d1, ...) of log-probabilities (or (C,)); target (N,) or
    (N, d1, ...) integers in [0, C) or ignore_index (or ()); weight (C,). Output: scalar, or
    target's shape for reduction='none'. 'mean' divides by the sum of weight[t_i] over
    non-ignored targets.

    >>> nll_loss(np.log(np.array([[0.5, 0.5]], np.float32)), np.array([1])).item()  # doctest: +ELLIPSIS
    0.693...
    """
    op = "nll_loss"
    reduction = _reduction(op, reduction, size_average, reduce)
    x, ta, w = _class_inputs(op, input, target, weight, ignore_index)
    return _NLLLoss.apply(x, ta, weight=w, ignore_index=int(ignore_index), reduction=reduction)


def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    """Cross entropy between logits and class indices: nll_loss(log_softmax(input, 1), target).

    Shape: input (N, C) or (N, C, d1, ...) logits (or (C,)); target (N,) or (N, d1, ...) integer
    class indices in [0, C) or ignore_index; weight (C,). Output: scalar, or target's shape for
    reduction='none'.

    label_smoothing e mixes the one-hot target with the uniform distribution:
    loss = (1-e) * nll + e/C * sum_c(-weight[c] * logp[c]); under 'mean' both terms are divided
    by the summed weight[t_i] of the non-ignored targets, exactly as PyTorch.

    >>> cross_entropy(np.zeros((2, 4), np.float32), np.array([0, 3])).item()  # log 4
    1.3862943649291992
    """
    op = "cross_entropy"
    reduction = _reduction(op, reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    x, ta, w = _class_inputs(op, input, target, weight, ignore_index)
    return _CrossEntropy.apply(
        x, ta, weight=w, ignore_index=int(ignore_index), reduction=reduction,
        label_smoothing=float(label_smoothing),
    )


class _MSELoss(Function):
    def forward(self, x, t, w, reduction):
        xp = get_array_module(x)
        self.xs, self.ts, self.reduction = x.shape, t.shape, reduction
        self.d = x - t
        sq = self.d * self.d
        self.w = w
        if w is not None:
            self.sq = sq
            sq = sq * w
        if reduction == "none":
            return sq
        total = sq.sum()
        if reduction == "mean":
            self.n = w.sum() if w is not None else x.dtype.type(sq.size)
            self.mean = total / self.n
            return xp.asarray(self.mean, dtype=x.dtype)
        return xp.asarray(total, dtype=x.dtype)

    def backward(self, g):
        xp = get_array_module(g)
        a = g / self.n if self.reduction == "mean" else g
        a = xp.broadcast_to(a, self.d.shape)
        gd = 2 * a * self.d
        if self.w is not None:
            gd = gd * self.w
        gx = unbroadcast(gd, self.xs) if self.needs_input_grad[0] else None
        gt = unbroadcast(-gd, self.ts) if self.needs_input_grad[1] else None
        gw = None
        if self.needs_input_grad[2]:
            # mean: d(sum w e / sum w)/dw_i = (e_i - mean) / sum w.
            gw = a * (self.sq - self.mean) if self.reduction == "mean" else a * self.sq
            gw = unbroadcast(gw, self.w.shape)
        return gx, gt, gw


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error (input - target)^2, optionally weighted elementwise.

    Shape: input and target of the same shape (a broadcastable different shape works with
    PyTorch's warning); weight, if given, of input's shape; output scalar, or the broadcast shape
    for reduction='none'. Weighted 'mean' is sum(w * e) / sum(w), as PyTorch.

    >>> mse_loss(np.array([1.0, 3.0], np.float32), np.array([0.0, 0.0], np.float32)).item()
    5.0
    """
    op = "mse_loss"
    reduction = _reduction(op, reduction, size_average, reduce)
    xa, ta = _array(input), _array(target)
    check_float(op, "input", xa)
    if not isinstance(target, Tensor):
        ta = ta.astype(xa.dtype, copy=False)
    check_float(op, "target", ta)
    if ta.dtype != xa.dtype:
        raise TypeError(f"{op}: input has dtype {xa.dtype} but target has dtype {ta.dtype}")
    if ta.shape != xa.shape:
        try:
            np.broadcast_shapes(xa.shape, ta.shape)
        except ValueError:
            raise ValueError(
                f"{op}: target shape {tuple(ta.shape)} cannot be broadcast to input shape "
                f"{tuple(xa.shape)}"
            ) from None
        warnings.warn(
            f"{op}: using a target size ({tuple(ta.shape)}) that is different to the input size "
            f"({tuple(xa.shape)}); this will likely lead to incorrect results due to broadcasting",
            stacklevel=2,
        )
    wa = None
    if weight is not None:
        wa = _array(weight)
        check_float(op, "weight", wa)
        if wa.shape != xa.shape:
            raise ValueError(
                f"{op}: weight shape {tuple(wa.shape)} must equal input shape {tuple(xa.shape)}"
            )
        if not isinstance(weight, Tensor):
            wa = wa.astype(xa.dtype, copy=False)
    return _MSELoss.apply(
        input if isinstance(input, Tensor) else xa,
        target if isinstance(target, Tensor) else ta,
        weight if isinstance(weight, Tensor) else wa,
        reduction=reduction,
    )
