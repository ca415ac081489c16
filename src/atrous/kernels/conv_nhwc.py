"""im2col + GEMM with channels-last columns: ``cols (N*OH*OW, KH*KW*C) @ W^T (KH*KW*C, O)``.

The same convolution as ``conv_gemm`` (groups 1), with the column matrix transposed: one row
per output position, its entries ordered (kh, kw, c). Two things make this layout cheaper:

* im2col copies runs of ``KW*C`` contiguous values (a row of the window in a channels-last
  padded image) instead of runs of ``OW`` (a row of output positions in NCHW), so small
  images and strided layers copy at near memcpy speed;
* the GEMM is tall and thin, ``(positions, K) @ (K, O)``, which OpenBLAS runs 1.2-1.5x faster
  than the wide-and-short ``(O, K) @ (K, positions)`` when O is small (16-128 filters).

The price is a transpose of the input into the padded channels-last buffer, far smaller than
the KH*KW-times larger column matrix it makes cheaper. The output is not transposed back: y is
returned as the NCHW-shaped view of the GEMM result, channels innermost (``atrous.layout``),
and the weight gradient reads a gy in that layout without a copy.

Shapes (groups == 1)::

    x: (N, C, H, W)   w: (O, C, KH, KW)   y, gy: (N, O, OH, OW),   P = OH*OW, K = KH*KW*C
    cols:  (n*P, K)     row n*P + oh*OW + ow, column (kh*KW + kw)*C + c
    w_cl:  (O, K)       w.transpose(0, 2, 3, 1): the weight in the same (kh, kw, c) order

    forward      y_cl (n*P, O) = cols @ w_cl^T              y: y_cl viewed as (N, O, OH, OW)
    weight_grad  gw_cl (O, K)  = gy_cl^T (O, n*P) @ cols     summed over chunks in order
    input_grad   stride 1: forward of gy with the flipped kernel (as conv_gemm); else conv_gemm

Batches run in chunks of images whose columns, GEMM result and padded input fit the smaller
of ``atrous.config.workspace_bytes`` and ``conv_gemm.CHUNK_BYTES`` (at least one block of
images, as in ``conv_gemm``), each chunk reusing the same buffers. As there, chunked results are
bitwise identical to unchunked ones: the weight gradient adds one GEMM per block, in order.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import conv_gemm
from .im2col import output_size, pad2d

_ZERO = ((0, 0), (0, 0))


def supports(x_shape, w_shape, stride, padding, dilation, groups):
    """True for the convolutions this layout computes: groups 1, any kernel/stride/padding/dilation."""
    return groups == 1


def _plan(x_shape, kernel, out_channels, out_hw, padding, itemsize):
    """(block, chunk): the weight gradient sums one GEMM per block of images (as many as
    ``conv_gemm.block_size`` puts side by side), so its result does not depend on the chunk;
    chunks are whole blocks whose working memory fits the workspace (see the module docstring)."""
    N, C, H, W = x_shape
    (KH, KW), P = kernel, out_hw[0] * out_hw[1]
    (t, b), (l, r) = padding
    per_image = (KH * KW * C + out_channels) * P + C * (H + max(t, 0) + max(b, 0)) * (W + max(l, 0) + max(r, 0))
    block = conv_gemm.block_size(N, P)
    return block, conv_gemm.chunk_size(N, block, per_image, itemsize)


def _im2col_into(xpad, kernel, stride, dilation, out_hw, cols):
    """cols (n*P, K) <- windows of the padded channels-last xpad (n, Hp, Wp, C): one copy."""
    xp = get_array_module(xpad)
    n, _, _, C = xpad.shape
    (KH, KW), (SH, SW), (DH, DW) = kernel, stride, dilation
    OH, OW = out_hw
    sn, sh, sw, sc = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, (n, OH, OW, KH, KW, C), (sn, SH * sh, SW * sw, DH * sh, DW * sw, sc), writeable=False
    )
    cols.reshape(n, OH, OW, KH, KW, C)[...] = view


def im2col(x, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1)):
    """Channels-last column matrix (N*OH*OW, KH*KW*C) of x (N, C, H, W).

    >>> import numpy as np
    >>> im2col(np.arange(8.0).reshape(1, 2, 2, 2), (2, 2)).tolist()  # taps (kh, kw), then c
    [[0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]]
    """
    parts = list(_chunks(x, kernel, stride, padding, dilation, chunk=max(1, x.shape[0])))
    if not parts:  # an empty batch
        return get_array_module(x).empty((0, kernel[0] * kernel[1] * x.shape[1]), dtype=x.dtype)
    return parts[0][2]


def padded_chunks(x, padding, chunk):
    """Yield (n0, n1, xpad) per chunk of ``chunk`` images: x[n0:n1] zero-padded and channels-last,
    (n1-n0, Hp, Wp, C). Negative padding crops. One buffer serves every chunk (its zero border
    written once), so the caller must be done with ``xpad`` before asking for the next chunk."""
    xp = get_array_module(x)
    N, C = x.shape[:2]
    x = pad2d(x, tuple((min(lo, 0), min(hi, 0)) for lo, hi in padding))  # crops only (a view)
    (t, b), (l, r) = ((max(lo, 0), max(hi, 0)) for lo, hi in padding)
    H, W = x.shape[2:]
    chunk = max(1, min(chunk, N))
    xpad = xp.zeros((chunk, H + t + b, W + l + r, C), dtype=x.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        xpad[: n1 - n0, t : t + H, l : l + W, :] = x[n0:n1].transpose(0, 2, 3, 1)
        yield n0, n1, xpad[: n1 - n0]


def _chunks(x, kernel, stride, padding, dilation, chunk):
    """Yield (n0, n1, cols) per chunk of ``chunk`` images. The columns live in one buffer
    allocated once, so the caller must be done with ``cols`` before asking for the next chunk."""
    KH, KW = kernel
    OH, OW = output_size(x.shape[2:], kernel, stride, padding, dilation)
    buf = get_array_module(x).empty((max(1, min(chunk, x.shape[0])) * OH * OW, KH * KW * x.shape[1]), dtype=x.dtype)
    for n0, n1, xpad in padded_chunks(x, padding, chunk):
        cols = buf[: (n1 - n0) * OH * OW]
        _im2col_into(xpad, kernel, stride, dilation, (OH, OW), cols)
        yield n0, n1, cols


def weight_cl(w):
    """(O, C, KH, KW) -> (O, KH*KW*C): the weight in the columns' (kh, kw, c) order."""
    O = w.shape[0]
    return get_array_module(w).ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(O, -1)


def forward(x, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """y = conv(x, w) (N, O, OH, OW), no bias; see the module docstring. y's memory is the GEMMs'
    result, channels last (``atrous.layout``)."""
    xp = get_array_module(x, w)
    N = x.shape[0]
    O, C, KH, KW = w.shape
    OH, OW = output_size(x.shape[2:], (KH, KW), stride, padding, dilation)
    P = OH * OW
    r = xp.empty((N * P, O), dtype=x.dtype)
    if N > 0:
        wt = weight_cl(w).T  # (K, O), a transposed view: BLAS reads it as is
        _, chunk = _plan(x.shape, (KH, KW), O, (OH, OW), padding, x.dtype.itemsize)
        for n0, n1, cols in _chunks(x, (KH, KW), stride, padding, dilation, chunk):
            xp.matmul(cols, wt, out=r[n0 * P : n1 * P])
    return r.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)


def weight_grad(x, gy, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """dL/dw (O, C, KH, KW), given x (N, C, H, W) and gy (N, O, OH, OW)."""
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    KH, KW = kernel
    P = OH * OW
    block, chunk = _plan(x.shape, kernel, O, (OH, OW), padding, x.dtype.itemsize)
    gw = None
    for n0, n1, cols in _chunks(x, kernel, stride, padding, dilation, chunk):
        m = (n1 - n0) // block
        # Per block: gw_cl (O, K) += gy_cl^T (O, B*P) @ cols (B*P, K), with gy_cl the
        # channels-last gy (B*P, O): a view of a gy in forward's layout, else a copy.
        gcl = gy[n0:n1].transpose(0, 2, 3, 1).reshape(m, block * P, O)
        parts = xp.matmul(gcl.transpose(0, 2, 1), cols.reshape(m, block * P, -1))
        for part in parts:  # summed in batch order, whatever the chunk size
            if gw is None:
                gw = part.copy()
            else:
                gw += part
    if gw is None:
        return xp.zeros((O, C, KH, KW), dtype=x.dtype)
    return xp.ascontiguousarray(gw.reshape(O, KH, KW, C).transpose(0, 3, 1, 2))


def input_grad(gy, w, input_hw, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """dL/dx (N, C, H, W) given gy: at stride 1 the forward of gy with the flipped kernel."""
    if tuple(stride) != (1, 1):
        return conv_gemm.input_grad(gy, w, input_hw, stride, padding, dilation, groups, algorithm="gemm")
    return conv_gemm.input_grad_by_forward(forward, gy, w, input_hw, padding, dilation)


__all__ = ["supports", "im2col", "padded_chunks", "weight_cl", "forward", "weight_grad", "input_grad"]
