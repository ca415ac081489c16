"""Normalization: batch normalization and AlexNet's local response normalization.

Batch norm works on a (N, C, M) view of any (N, C, *) input, M the product of the spatial
sizes, so one code path serves (N, C), (N, C, L) and (N, C, H, W). The per-channel reductions
over (N, M) are ``einsum`` contractions, which read memory once and allocate nothing, and the
backward is the closed form (three per-channel sums, then one elementwise expression) rather
than a chain of small ops. An input whose memory has the channels innermost (``atrous.layout``:
what some convolution algorithms return) is seen as an (M, C) matrix instead, and the outputs
and gradients keep its layout.
"""
from __future__ import annotations

import numbers

import numpy as np  # noqa: F401  (the doctest examples use np)

from .._validate import check_float
from ..autograd import Function, is_grad_enabled
from .. import layout
from ..backend import get_array_module
from ..tensor import Tensor, _as_array

__all__ = ["batch_norm", "local_response_norm"]


def _array(x):
    return x.data if isinstance(x, Tensor) else _as_array(x)


class _BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel, on x viewed as (N, C, M)
    (or as (M, C) when its channels are innermost in memory; see ``layout.ChannelView``)."""

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps):
        xp = get_array_module(x)
        ch = self.channels = layout.ChannelView(x)
        _per_channel = ch.per_channel
        x3 = ch.view(x)
        count = x.size // max(1, x.shape[1])
        dt = x.dtype.type
        self.training, self.count = training, count
        self.has_weight = weight is not None
        keep = is_grad_enabled() and any(self.needs_input_grad)

        if training:
            mean = ch.sum(x3) / dt(count)
            xc = x3 - _per_channel(mean)
            # Biased variance normalises; the unbiased one feeds the running estimate (as torch).
            var = ch.dot(xc, xc) / dt(count)
            invstd = 1 / xp.sqrt(var + dt(eps))
            if running_mean is not None:
                m = momentum
                running_mean[...] = (1 - m) * running_mean + m * mean.astype(running_mean.dtype)
                unbiased = var.astype(running_var.dtype) * (count / (count - 1))
                running_var[...] = (1 - m) * running_var + m * unbiased
            scale = invstd * weight if weight is not None else invstd
            # Without a graph to record, xc is not needed afterwards: write y over it.
            y = xp.multiply(xc, _per_channel(scale), out=None if keep else xc)
            if bias is not None:
                y += _per_channel(bias)
            if keep:
                self.xc, self.invstd, self.scale = xc, invstd, scale
            return ch.restore(y)

        # Evaluation: a fixed per-channel affine map y = x * scale + shift.
        invstd = 1 / xp.sqrt(running_var.astype(x.dtype) + dt(eps))
        mean = running_mean.astype(x.dtype)
        scale = invstd * weight if weight is not None else invstd
        shift = -mean * scale
        if bias is not None:
            shift = shift + bias
        y = x3 * _per_channel(scale)
        y += _per_channel(shift)
        if keep:
            self.x3, self.mean, self.invstd, self.scale = x3, mean, invstd, scale
        return ch.restore(y)

    def backward(self, g):
        ch = self.channels
        _per_channel = ch.per_channel
        g3 = ch.view(g)  # a copy if g has another layout than x
        need_x, need_w, need_b = self.needs_input_grad
        gx = gw = gb = None
        gsum = ch.sum(g3) if (need_b or (self.training and need_x)) else None
        if need_b:
            gb = gsum
        if self.training:
            # dotp = sum (x - mean) * g; gweight = dotp * invstd.
            dotp = ch.dot(g3, self.xc) if (need_w or need_x) else None
            if need_w:
                gw = dotp * self.invstd
            if need_x:
                # gx = scale * (g - mean(g) - xhat * mean(g * xhat)), xhat = xc * invstd,
                # built in four in-place passes over one new array.
                n = g.dtype.type(self.count)
                gx = self.xc * _per_channel(-dotp * self.invstd * self.invstd / n)
                gx += _per_channel(-gsum / n)
                gx += g3
                gx *= _per_channel(self.scale)
                gx = ch.restore(gx)
        else:
            if need_w:
                # sum g * (x - mean) * invstd, without materialising x - mean.
                gw = (ch.dot(g3, self.x3) - self.mean * ch.sum(g3))
                gw = gw * self.invstd
            if need_x:
                gx = ch.restore(g3 * _per_channel(self.scale))
        return gx, gw, gb


def _check_channels(op, name, v, C, xshape):
    if v is None:
        return None
    arr = _array(v)
    check_float(op, name, arr)
    if arr.ndim != 1 or arr.shape[0] != C:
        raise ValueError(
            f"{op}: input has C={C} channels (input shape {tuple(xshape)}) but {name} has "
            f"shape {tuple(arr.shape)}; expected ({C},)"
        )
    return arr


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch normalization over the batch and spatial axes, one mean and variance per channel.

    Shape: input (N, C), (N, C, L) or (N, C, H, W) (any (N, C, *)); running_mean, running_var,
    weight, bias (C,); output as input.

    training=True normalises with the batch's mean and biased variance and, when running stats
    are given, updates them IN PLACE (arrays, or a Tensor's ``.data``):
    running = (1 - momentum) * running + momentum * batch_stat, with the unbiased variance
    (divisor N*M - 1), as PyTorch. training=False normalises with the running statistics.
    Gradients flow to input, weight and bias; running statistics are buffers, never differentiated.

    >>> x = np.array([[1.0], [3.0]], np.float32)          # N=2, C=1
    >>> rm, rv = np.zeros(1, np.float32), np.ones(1, np.float32)
    >>> batch_norm(x, rm, rv, training=True).numpy().ravel().round(3)
    array([-1.,  1.], dtype=float32)
    >>> rm, rv                                            # 0.1 * 2, 0.9 + 0.1 * 2
    (array([0.2], dtype=float32), array([1.1], dtype=float32))
    """
    op = "batch_norm"
    xa = _array(input)
    check_float(op, "input", xa)
    if xa.ndim < 2:
        raise ValueError(
            f"{op}: expected input of shape (N, C, *) with at least 2 dims, got {xa.ndim}-D "
            f"with shape {tuple(xa.shape)}"
        )
    C = xa.shape[1]
    rm = _check_channels(op, "running_mean", running_mean, C, xa.shape)
    rv = _check_channels(op, "running_var", running_var, C, xa.shape)
    w = _check_channels(op, "weight", weight, C, xa.shape)
    b = _check_channels(op, "bias", bias, C, xa.shape)
    for name, arr in (("weight", w), ("bias", b)):
        if arr is not None and arr.dtype != xa.dtype:
            raise TypeError(f"{op}: input has dtype {xa.dtype} but {name} has dtype {arr.dtype}")
    if (rm is None) != (rv is None):
        raise ValueError(f"{op}: running_mean and running_var must either both be None or neither be None")
    if not training and rm is None:
        raise ValueError(
            f"{op}: running_mean and running_var must be given in evaluation mode (training=False)"
        )
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(
            f"{op}: momentum must be a float, got {momentum!r} (a cumulative average, momentum=None, "
            f"is computed by the BatchNorm module, which passes the factor for each step)"
        )
    if training and eps <= 0:
        raise ValueError(f"{op}: eps must be positive during training, got {eps}")
    if eps < 0:
        raise ValueError(f"{op}: eps must be non-negative, got {eps}")
    if training:
        per_channel = xa.size // C if C else 0
        if per_channel <= 1:
            raise ValueError(
                f"{op}: expected more than 1 value per channel when training, got input shape "
                f"{tuple(xa.shape)}"
            )
    if rm is not None and not (rm.flags.writeable and rv.flags.writeable) and training:
        raise ValueError(
            f"{op}: running_mean and running_var must be writeable arrays to be updated in place"
        )
    return _BatchNorm.apply(
        input if isinstance(input, Tensor) else xa,
        weight if isinstance(weight, Tensor) else w,
        bias if isinstance(bias, Tensor) else b,
        running_mean=rm,
        running_var=rv,
        training=bool(training),
        momentum=float(momentum),
        eps=float(eps),
    )


def _window_sum(xp, a, lo, hi, size):
    """s[:, c] = sum of a[:, c - lo : c + hi + 1] along axis 1, zeros outside (lo + hi + 1 = size)."""
    C = a.shape[1]
    padded = xp.zeros((a.shape[0], C + lo + hi) + a.shape[2:], dtype=a.dtype)
    padded[:, lo : lo + C] = a
    s = padded[:, 0:C].copy()
    for j in range(1, size):  # one slice per tap of the channel window
        s += padded[:, j : j + C]
    return s


class _LocalResponseNorm(Function):
    def forward(self, x, size, alpha, beta, k):
        xp = get_array_module(x)
        t = x.dtype.type
        self.x, self.size, self.alpha, self.beta = x, size, alpha, beta
        # div = (k + alpha * mean of x^2 over the window)^beta; the window pads size//2 channels
        # before and (size-1)//2 after, as torch's avg_pool over a padded channel axis.
        S = _window_sum(xp, x * x, size // 2, (size - 1) // 2, size)
        self.base = S / t(size) * t(alpha) + t(k)
        self.inv = xp.power(self.base, t(-beta))
        return x * self.inv

    def backward(self, g):
        xp = get_array_module(g)
        t, size = g.dtype.type, self.size
        # Output c depends on x_i for i in [c - size//2, c + (size-1)//2]; gathering back to x_i
        # sums over c in [i - (size-1)//2, i + size//2]: the same window with its pads swapped.
        T = g * self.x * self.inv / self.base
        W = _window_sum(xp, T, (size - 1) // 2, size // 2, size)
        return (g * self.inv - t(2 * self.beta * self.alpha / size) * self.x * W,)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """AlexNet's local response normalization across channels, PyTorch's definition.

    b_c = a_c / (k + alpha / size * sum_{c'} a_{c'}^2)^beta, the sum over the ``size`` channels
    c - size//2 .. c + (size-1)//2 (channels outside [0, C) count as zeros).

    Shape: input (N, C, *) with at least 3 dims; output as input.

    >>> x = np.ones((1, 2, 1), np.float32)
    >>> local_response_norm(x, size=2, alpha=1.0, beta=1.0, k=0.0).numpy().ravel()
    array([2., 1.], dtype=float32)
    """
    op = "local_response_norm"
    xa = _array(input)
    check_float(op, "input", xa)
    if xa.ndim < 3:
        raise ValueError(
            f"{op}: expected 3D or higher dimensionality input (N, C, *), got {xa.ndim}-D with "
            f"shape {tuple(xa.shape)}"
        )
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    return _LocalResponseNorm.apply(
        input if isinstance(input, Tensor) else xa,
        size=int(size),
        alpha=float(alpha),
        beta=float(beta),
        k=float(k),
    )
