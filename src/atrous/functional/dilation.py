"""Dilated ("à trous") convolution tools: ``dilate_kernel``.

A convolution with dilation ``r`` spaces its taps ``r`` pixels apart; it is the same operation
as an ordinary convolution whose kernel has ``r - 1`` zeros inserted between neighbouring
taps ("trous", holes). ``dilate_kernel`` builds that zero-filled kernel explicitly, so

    conv2d(x, w, dilation=r) == conv2d(x, dilate_kernel(w, r))

The dilated kernel covers ``r*(k-1) + 1`` pixels per axis with the same ``k*k`` learned
weights: the receptive field grows with the rate while the parameter count stays put (a
stack of 3x3 convolutions at rates 1, 2, 4, 8 sees 31x31 pixels with 4*9 weights per channel
pair; Yu & Koltun, 2016). Materialising the zeros costs ``r*r`` times the multiplications,
which is why ``conv2d(..., dilation=r)`` is the way to compute it; this function is for
seeing, testing and exporting to tools that only know undilated kernels.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..shape import effective_kernel, pair
from ..tensor import Tensor

__all__ = ["dilate_kernel"]


class DilateKernel(Function):
    """out[..., i*RH, j*RW] = w[..., i, j], zeros elsewhere; backward reads the same taps back."""

    def forward(self, w, rate):
        xp = get_array_module(w)
        RH, RW = rate
        KH, KW = w.shape[-2:]
        out = xp.zeros(w.shape[:-2] + (effective_kernel(KH, RH), effective_kernel(KW, RW)), dtype=w.dtype)
        out[..., ::RH, ::RW] = w
        self.rate = rate
        return out

    def backward(self, g):
        RH, RW = self.rate
        # A strided view of g; copied so the gradient never aliases the incoming array.
        return (g[..., ::RH, ::RW].copy(),)


def dilate_kernel(weight, rate):
    """Insert ``rate - 1`` zeros between the taps of a kernel along its last two axes.

    Shape:
        weight (..., KH, KW), e.g. OIHW (O, C/groups, KH, KW) -> (..., RH*(KH-1) + 1,
        RW*(KW-1) + 1), where ``rate`` is an int or a pair (RH, RW) of ints >= 1. The
        result has the same dtype; gradients flow back to ``weight`` when it is a Tensor.

    >>> import numpy as np
    >>> dilate_kernel(np.array([[1., 2.], [3., 4.]]), 2).numpy()
    array([[1., 0., 2.],
           [0., 0., 0.],
           [3., 0., 4.]])
    """
    op = "dilate_kernel"
    a = weight.data if isinstance(weight, Tensor) else weight
    if not hasattr(a, "ndim"):
        if isinstance(a, (list, tuple)):
            a = np.asarray(a)
        else:
            raise TypeError(f"{op}: weight must be an array or Tensor, got {type(weight).__name__}")
    if a.ndim < 2:
        raise ValueError(
            f"{op}: weight must have at least 2 dimensions (..., KH, KW), got shape {tuple(a.shape)}"
        )
    rate = pair(rate, "rate", op)
    if min(rate) < 1:
        raise ValueError(f"{op}: rate must be >= 1 in every dimension (1 = no holes), got {rate}")
    return DilateKernel.apply(weight if isinstance(weight, Tensor) else a, rate=rate)
