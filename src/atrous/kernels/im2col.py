"""im2col and col2im: sliding windows as a matrix, and that matrix summed back into an image.

Shapes (all arrays are plain NumPy/CuPy arrays, no autograd here)::

    x:        (N, C, H, W)
    padding:  ((top, bottom), (left, right)); a negative amount crops instead of padding
    windows:  OH = (H + top + bottom - DH*(KH-1) - 1) // SH + 1, likewise OW
    columns:  (N, C*KH*KW, OH*OW)          PyTorch's F.unfold layout (block=1)
          or  (N/B, C*KH*KW, B*OH*OW)      B images side by side, for wider GEMMs

Row r = c*KH*KW + kh*KW + kw of a column matrix holds input channel c seen through kernel
tap (kh, kw) (Caffe's order: channel, then kernel row, then kernel column), so
``weight.reshape(O, C*KH*KW) @ columns`` is the convolution.

im2col builds a read-only 6-D *view* of the padded input with ``as_strided`` -- tap (kh, kw)
of window (oh, ow) sits at element (oh*SH + kh*DH, ow*SW + kw*DW) -- and makes one copy of it
into the column buffer. col2im is its adjoint: a loop over the KH*KW taps, each adding one
strided slab of columns into the padded gradient, so overlapping windows sum. With numba
(``atrous[fast]``) col2im runs compiled instead: one pass per (n, c) plane over both cores,
adding the taps in the same order, so the result is bitwise the same.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..shape import conv_output_size
from ._numba import enabled, jit, prange, usable

_ZERO = ((0, 0), (0, 0))


def pad2d(x, padding):
    """Pad the last two axes with zeros by ((top, bottom), (left, right)); negatives crop."""
    (t, b), (l, r) = padding
    if t == b == l == r == 0:
        return x
    xp = get_array_module(x)
    H, W = x.shape[-2:]
    x = x[..., max(-t, 0) : H - max(-b, 0), max(-l, 0) : W - max(-r, 0)]
    pads = ((max(t, 0), max(b, 0)), (max(l, 0), max(r, 0)))
    if pads == _ZERO:
        return x
    return xp.pad(x, ((0, 0),) * (x.ndim - 2) + pads)


def unpad2d(g, padding):
    """Adjoint of ``pad2d``: the gradient of the unpadded array from that of the padded one."""
    (t, b), (l, r) = padding
    if t == b == l == r == 0:
        return g
    xp = get_array_module(g)
    H, W = g.shape[-2:]
    g = g[..., max(t, 0) : H - max(b, 0), max(l, 0) : W - max(r, 0)]
    crops = ((max(-t, 0), max(-b, 0)), (max(-l, 0), max(-r, 0)))
    if crops == _ZERO:
        return g
    return xp.pad(g, ((0, 0),) * (g.ndim - 2) + crops)


def output_size(hw, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1)):
    """(OH, OW) of windows over an (H, W) input; see ``atrous.shape.conv_output_size``."""
    return tuple(
        conv_output_size(hw[i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(2)
    )


def windows(xpad, kernel, out_hw, stride=(1, 1), dilation=(1, 1)):
    """Read-only view (N, C, KH, KW, OH, OW) of an already padded (N, C, Hp, Wp) array."""
    xp = get_array_module(xpad)
    sN, sC, sH, sW = xpad.strides
    (KH, KW), (SH, SW), (DH, DW) = kernel, stride, dilation
    shape = xpad.shape[:2] + (KH, KW) + tuple(out_hw)
    strides = (sN, sC, DH * sH, DW * sW, SH * sH, SW * sW)
    return xp.lib.stride_tricks.as_strided(xpad, shape, strides, writeable=False)


def im2col_chunks(x, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), block=1, chunk=None):
    """Yield ``(n0, n1, cols)`` over the batch, ``chunk`` images (a multiple of ``block``) at a time.

    ``cols`` is (nb // block, C*KH*KW, block*OH*OW) for images n0..n1: ``block`` images side
    by side per matrix (column ``i*OH*OW + p`` of matrix ``m`` is window p of image
    ``n0 + m*block + i``). The padded input and the columns live in two buffers allocated once
    and reused by every chunk, so the caller must be done with ``cols`` before the next one.
    """
    xp = get_array_module(x)
    N, C = x.shape[:2]
    KH, KW = kernel
    chunk = N if chunk is None else chunk
    OH, OW = output_size(x.shape[2:], kernel, stride, padding, dilation)
    x = pad2d(x, tuple((min(lo, 0), min(hi, 0)) for lo, hi in padding))  # crops only
    (t, b), (l, r) = ((max(lo, 0), max(hi, 0)) for lo, hi in padding)
    H, W = x.shape[2:]
    # Zero once; each chunk only rewrites the interior, so the border stays zero.
    xpad = xp.zeros((chunk, C, H + t + b, W + l + r), dtype=x.dtype) if t or b or l or r else None
    buf = xp.empty((chunk // block, C, KH, KW, block, OH, OW), dtype=x.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        nb, m = n1 - n0, (n1 - n0) // block
        src = x[n0:n1]
        if xpad is not None:
            xpad[:nb, :, t : t + H, l : l + W] = src
            src = xpad[:nb]
        # (nb, C, KH, KW, OH, OW) -> (m, C, KH, KW, block, OH, OW): splitting nb is still a view.
        view = windows(src, kernel, (OH, OW), stride, dilation)
        view = view.reshape(m, block, C, KH, KW, OH, OW).transpose(0, 2, 3, 4, 1, 5, 6)
        buf[:m] = view  # the one copy im2col makes
        yield n0, n1, buf[:m].reshape(m, C * KH * KW, block * OH * OW)


def im2col(x, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), block=1):
    """Column matrices of ``x`` (N, C, H, W): (N // block, C*KH*KW, block*OH*OW).

    ``block=1`` is F.unfold's (N, C*KH*KW, L); see ``im2col_chunks`` for larger blocks.

    >>> import numpy as np
    >>> im2col(np.arange(16.0).reshape(1, 1, 4, 4), (3, 3)).shape
    (1, 9, 4)
    """
    if x.shape[0] == 0:
        OH, OW = output_size(x.shape[2:], kernel, stride, padding, dilation)
        return get_array_module(x).empty((0, x.shape[1] * kernel[0] * kernel[1], OH * OW), x.dtype)
    ((_, _, cols),) = im2col_chunks(x, kernel, stride, padding, dilation, block)
    return cols


def col2im(cols, x_shape, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), block=1):
    """Sum column matrices (laid out as ``im2col`` returns them) back into an image.

    Every pixel of the (N, C, H, W) result receives the sum of the column entries of all
    windows that cover it (PyTorch's F.fold for ``block=1``).
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (DH, DW) = kernel, stride, dilation
    (t, b), (l, r) = padding
    B = N // block
    OH, OW = output_size((H, W), kernel, stride, padding, dilation)
    taps = cols.reshape(B, C, KH, KW, block, OH, OW)
    if enabled() and usable(cols):
        gx = np.empty((N, C, H, W), dtype=cols.dtype)
        _col2im_nb.compiled(np.ascontiguousarray(taps), gx, SH, SW, t, l, DH, DW)
        return gx
    gpad = xp.zeros((B, block, C, H + t + b, W + l + r), dtype=cols.dtype)
    for kh in range(KH):
        h0 = kh * DH  # tap kh of window oh reads padded row oh*SH + kh*DH
        for kw in range(KW):
            w0 = kw * DW
            rows = slice(h0, h0 + SH * (OH - 1) + 1, SH)
            cols_ = slice(w0, w0 + SW * (OW - 1) + 1, SW)
            gpad[:, :, :, rows, cols_] += taps[:, :, kh, kw].transpose(0, 2, 1, 3, 4)
    return unpad2d(gpad.reshape(N, C, H + t + b, W + l + r), padding)


@jit
def _col2im_nb(taps, gx, SH, SW, t, l, DH, DW):
    """col2im per (n, c) plane, taps outermost as the NumPy loop. Tap (kh, kw) of window
    (oh, ow) is input pixel (oh*SH - t + kh*DH, ow*SW - l + kw*DW); only windows whose tap lands
    inside the input are visited: oh in [ceil((t - kh*DH) / SH), floor((H-1 + t - kh*DH) / SH)].
    The sums go into the plane split into SW column phases (phase r holds columns r, r+SW, ...),
    where one tap's windows of one row are a unit-stride run, then back into the plane."""
    C, KH, KW, block, OH, OW = taps.shape[1:]
    N, H, W = gx.shape[0], gx.shape[2], gx.shape[3]
    Wq = -(-W // SW)
    for job in prange(N * C):
        n, c = job // C, job % C
        nb, i = n // block, n % block
        gxs = np.zeros((SW, H, Wq), dtype=gx.dtype)
        for kh in range(KH):
            dh = kh * DH - t
            oh0, oh1 = max(0, -(dh // SH)), min(OH, (H - 1 - dh) // SH + 1)
            for kw in range(KW):
                dw = kw * DW - l
                ow0, ow1 = max(0, -(dw // SW)), min(OW, (W - 1 - dw) // SW + 1)
                if ow0 >= ow1:
                    continue
                col = ow0 * SW + dw  # input column of window ow0: phase col % SW, col // SW
                r, j0 = col % SW, col // SW
                for oh in range(oh0, oh1):
                    dst = gxs[r, oh * SH + dh, j0 : j0 + ow1 - ow0]
                    src = taps[nb, c, kh, kw, i, oh, ow0:ow1]
                    for j in range(ow1 - ow0):
                        dst[j] += src[j]
        for r in range(SW):
            for ih in range(H):
                for j in range((W - r + SW - 1) // SW):
                    gx[n, c, ih, r + j * SW] = gxs[r, ih, j]
