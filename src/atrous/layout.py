"""Memory layouts of (N, C, *) activations: NCHW, or any order with the channels innermost.

Shapes are always (N, C, H, W), as in PyTorch; the memory behind them need not be NCHW. Some
convolution algorithms compute their output with the channels innermost (``kernels.mec``: rows
(oh, n, ow); ``kernels.conv_nhwc``: rows (n, oh, ow)) and return it as it is, an NCHW-shaped
view of that memory, like PyTorch's ``channels_last`` tensors: reordering it would cost a pass
over the activation for nothing. NumPy's elementwise operations keep the memory order of their
inputs, so ReLU, residual sums and their gradients carry the layout along; the next convolution
reads runs of C contiguous values from it, which is what its channels-last lowering wants.

Per-channel reductions are what such a layout changes: ``x.sum(axis=(0, 2, 3))`` strides across
the innermost axis and runs several times slower. The same memory is a dense (M, C) matrix,
though, whose column sums are fast; ``channels_last_order`` finds that view, and batch norm
works on it and hands back its results in the layout it was given. Its column sums
(``column_sums``, ``column_dots``) add blocks of ROWS rows by GEMV and then the block sums, which
keeps float32 rounding near that of NumPy's pairwise sums (5e-7 relative on 32768 rows, where
one running sum per column loses 5e-6).
"""
from __future__ import annotations

from .backend import get_array_module

__all__ = ["channels_last_order", "channel_matrix", "from_channel_matrix", "column_sums", "column_dots",
           "wide_rows", "ChannelView", "channel_sums", "add_per_channel_"]

ROWS = 128  # rows summed per GEMV: partial sums of 128 values, then a sum of the partials
ROW_VALUES = 512  # wide_rows: about this many values per row of the widened matrix


def channels_last_order(a):
    """The axis order (ending with the channel axis 1) in which ``a``'s memory is C-contiguous,
    when its channels are innermost and it has no gaps; None for NCHW or any other layout.

    >>> import numpy as np
    >>> x = np.zeros((2, 3, 4, 5), np.float32)
    >>> channels_last_order(x) is None
    True
    >>> channels_last_order(np.zeros((2, 4, 5, 3), np.float32).transpose(0, 3, 1, 2))
    (0, 2, 3, 1)
    """
    if a.ndim < 3 or a.shape[1] < 2 or a.strides[1] != a.itemsize or a.flags.c_contiguous:
        return None
    others = sorted((ax for ax in range(a.ndim) if ax != 1), key=lambda ax: -a.strides[ax])
    order = tuple(others) + (1,)
    return order if a.transpose(order).flags.c_contiguous else None


def channel_matrix(a, order):
    """``a`` (N, C, *) as an (M, C) matrix, rows in ``order`` (from ``channels_last_order``):
    a view when ``a`` is laid out that way, else a copy."""
    return a.transpose(order).reshape(-1, a.shape[1])


def from_channel_matrix(m, shape, order):
    """The (N, C, *) view of an (M, C) matrix whose rows run in ``order``: the inverse of
    ``channel_matrix``, so the result has the layout the matrix came from."""
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return m.reshape([shape[ax] for ax in order]).transpose(inverse)


def _blocks(a):
    """(k, ROWS, C) view of the first k*ROWS rows of a C-contiguous (M, C) matrix, and the rest."""
    k = a.shape[0] // ROWS
    return a[: k * ROWS].reshape(k, ROWS, a.shape[1]), a[k * ROWS :]


def column_sums(a):
    """Per-column sums (C,) of an (M, C) matrix."""
    xp = get_array_module(a)
    head, tail = _blocks(xp.ascontiguousarray(a))
    return (xp.ones(ROWS, a.dtype) @ head).sum(axis=0) + tail.sum(axis=0)


def column_dots(a, b):
    """Per-column dot products (C,) of two (M, C) matrices: sum_m a[m, c] * b[m, c]."""
    xp = get_array_module(a, b)
    (ha, ta), (hb, tb) = _blocks(xp.ascontiguousarray(a)), _blocks(xp.ascontiguousarray(b))
    return xp.einsum("krc,krc->kc", ha, hb).sum(axis=0) + xp.einsum("mc,mc->c", ta, tb)


def wide_rows(M, C):
    """k such that the (M, C) matrix is viewed as (M/k, k*C), rows of about ROW_VALUES values.
    Elementwise passes with a per-channel operand broadcast along rows of only C values spend
    their time in NumPy's per-row overhead; tiling the operand k times makes the rows long."""
    k = max(1, min(M, ROW_VALUES // max(1, C)))
    while M % k:
        k -= 1
    return k


class ChannelView:
    """How per-channel work sees an (N, C, *) array of ``a``'s layout: (N, C, M) for NCHW
    memory; when the channels are innermost, the (M, C) matrix with k consecutive rows side by
    side, (M/k, k*C) (``wide_rows``). Per-channel vectors, sums and dot products in that view,
    and the way back to the (N, C, *) shape and layout. Batch norm works in it."""

    def __init__(self, a):
        self.shape = a.shape
        self.order = channels_last_order(a)
        if self.order is not None:
            self.C = a.shape[1]
            self.k = wide_rows(a.size // self.C, self.C)

    def view(self, a):
        """``a`` (of this shape) in the view: no copy when it has the layout the view was made
        for (and, for NCHW, is contiguous)."""
        if self.order is None:
            return a.reshape(self.shape[0], self.shape[1], -1)
        return channel_matrix(a, self.order).reshape(-1, self.k * self.C)

    def per_channel(self, v):
        """A (C,) vector shaped to broadcast against the view."""
        if self.order is None:
            return v.reshape(1, -1, 1)
        return get_array_module(v).tile(v, self.k).reshape(1, -1)

    def sum(self, a):
        """Per-channel sums (C,) of a view."""
        if self.order is None:
            return get_array_module(a).einsum("ncm->c", a)
        return column_sums(a).reshape(self.k, self.C).sum(axis=0)

    def dot(self, a, b):
        """Per-channel dot products (C,) of two views."""
        if self.order is None:
            return get_array_module(a).einsum("ncm,ncm->c", a, b)
        return column_dots(a, b).reshape(self.k, self.C).sum(axis=0)

    def restore(self, a):
        """A view (or an array shaped like one) back as (N, C, *) in the layout."""
        if self.order is None:
            return a.reshape(self.shape)
        return from_channel_matrix(a.reshape(-1, self.C), self.shape, self.order)


def channel_sums(a):
    """Per-channel sums (C,) of an (N, C, *) array in any layout, reading its memory in order."""
    cv = ChannelView(a)
    return cv.sum(cv.view(a))


def add_per_channel_(a, v):
    """In place: a[:, c] += v[c] for an (N, C, *) array ``a`` in any layout; returns a."""
    cv = ChannelView(a)
    if cv.order is None:  # broadcast in place (a reshaped view of a non-contiguous a would copy)
        a += v.reshape((1, -1) + (1,) * (a.ndim - 2))
    else:
        rows = cv.view(a)  # a view: a is dense in that order
        rows += cv.per_channel(v)
    return a
