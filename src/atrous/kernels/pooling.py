"""Pooling kernels on plain NCHW arrays (no autograd): max, average and adaptive pooling.

Fixed-window pooling never materialises the padded input or a window tensor. For each kernel
tap (kh, kw) the outputs whose tap lands inside the input form a rectangle, and the input pixels
they read form a strided view of the same shape, so one tap is one vectorised NumPy op::

    out[:, :, oh, ow]  <-  x[:, :, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

Taps that land in the padding are simply skipped: that is padding with -inf for max and with
zeros for the average sum. The input is first split into SW column phases (``split_columns``)
so that every tap reads unit-stride rows.

Backward: average pooling adds g/divisor tap by tap into the (phase-split) input gradient;
within one tap no two outputs touch the same pixel, so overlapping windows accumulate across
taps. Max pooling turns each window's winning tap into a flat pixel index and scatter-adds
all gradients at once (``add.at``), which also accumulates when windows share a maximum.

Adaptive pooling uses PyTorch's bins: output i covers [floor(i*H/OH), ceil((i+1)*H/OH)).

Compiled paths (numba, ``atrous[fast]``; see ``kernels._numba``): fixed-window max and average
pooling, forward and backward, run as one pass per (n, c) plane over both cores instead of
several NumPy passes per tap. They visit the taps in the same order as the NumPy code and
give bitwise equal results (the NumPy code is the reference and the fallback).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._numba import enabled, jit, prange, usable


# ----- geometry ------------------------------------------------------------------------
def tap_range(size, out, stride, pad, offset):
    """Outputs whose tap at ``offset`` (= k*dilation) reads inside [0, size), and what they read.

    Output o reads input ``o*stride - pad + offset``. Returns ``(out_slice, in_slice)`` of equal
    length, or None when every output's tap lands in the padding.
    """
    lo = max(0, -((offset - pad) // stride))  # ceil((pad - offset) / stride)
    hi = min(out, (size - 1 + pad - offset) // stride + 1)
    if lo >= hi:
        return None
    start = lo * stride - pad + offset
    return slice(lo, hi), slice(start, start + (hi - lo - 1) * stride + 1, stride)


def split_columns(x, S):
    """(N, C, H, W) -> (S, N, C, H, ceil(W/S)): phase r holds columns r, r+S, r+2S, ...

    With column stride S every tap reads one phase with unit stride, so the per-tap NumPy ops
    run over contiguous rows (several times faster than over a stride-S view). Entries past
    the end of a short phase are never read.
    """
    if S == 1:
        return x[None]
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Wq = -(-W // S)
    if W % S == 0 and x.flags.c_contiguous:
        return xp.ascontiguousarray(xp.moveaxis(x.reshape(N, C, H, Wq, S), -1, 0))
    xs = xp.empty((S, N, C, H, Wq), dtype=x.dtype)
    for r in range(S):
        cols = x[..., r::S]
        xs[r, ..., : cols.shape[-1]] = cols
    return xs


def merge_columns(xs, W):
    """Inverse of ``split_columns``: (S, N, C, H, Wq) -> (N, C, H, W)."""
    S, N, C, H, Wq = xs.shape
    if S == 1:
        return xs[0]
    xp = get_array_module(xs)
    # Write phase by phase into (..., Wq, S): unit-stride reads, S-strided writes. (One
    # moveaxis + reshape copy iterates an inner axis of length S and is ~4x slower.)
    x = xp.empty((N, C, H, Wq, S), dtype=xs.dtype)
    for r in range(S):
        x[..., r] = xs[r]
    x = x.reshape(N, C, H, Wq * S)
    return x if W == Wq * S else x[..., :W]


def _taps(H, W, OH, OW, kernel, stride, padding, dilation):
    """Yield (tap number, out index, index into ``split_columns``) for every tap on the input."""
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    for kh in range(KH):
        rows = tap_range(H, OH, SH, PH, kh * DH)
        if rows is None:
            continue
        for kw in range(KW):
            cols = tap_range(W, OW, SW, PW, kw * DW)
            if cols is None:
                continue
            # Input column c = phase (c % SW), position c // SW within that phase.
            c, n = cols[1].start, cols[0].stop - cols[0].start
            phase = slice(c // SW, c // SW + n)
            yield kh * KW + kw, (Ellipsis, rows[0], cols[0]), (c % SW, Ellipsis, rows[1], phase)


def _first_tap(xp, size, out, k, s, p, d):
    """PyTorch's first in-bounds tap of each window (its while-loop ``ih0 += dilation``).

    Returns (tap k0, input position of that tap, valid); a window has no in-bounds tap when
    k0 runs past the kernel or the position past the input.
    """
    start = xp.arange(out) * s - p
    k0 = -(xp.minimum(start, 0) // d)  # ceil(max(-start, 0) / d)
    pos = start + k0 * d
    return k0, pos, (k0 < k) & (pos < size)


def _arg_dtype(xp, taps):
    return xp.uint8 if taps < 255 else xp.int32


# ----- max pooling -----------------------------------------------------------------------
def max_pool2d_forward(x, out_hw, kernel, stride, padding, dilation, need_arg=True):
    """Max pooling of x (N, C, H, W) -> (out (N, C, OH, OW), arg or None).

    ``arg`` holds the winning tap kh*KW + kw of each window (the first maximum in row-major
    order, a NaN winning as in PyTorch: its last NaN), or KH*KW for a window with no in-bounds
    tap (its output is -inf and it gets no gradient).
    """
    if _compiled_ok(x):
        return _max_pool2d_forward_nb(x, out_hw, kernel, stride, padding, dilation, need_arg)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_hw
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    out = xp.full((N, C, OH, OW), -xp.inf, dtype=x.dtype)
    arg = None
    if need_arg:
        # A window whose in-bounds values are all -inf keeps its first in-bounds tap (PyTorch's
        # initial maxindex); the scan below only moves it on a strictly greater value.
        kh0, _, vh = _first_tap(xp, H, OH, KH, SH, PH, DH)
        kw0, _, vw = _first_tap(xp, W, OW, KW, SW, PW, DW)
        first = xp.where(vh[:, None] & vw[None, :], kh0[:, None] * KW + kw0[None, :], KH * KW)
        arg = xp.empty((N, C, OH, OW), dtype=_arg_dtype(xp, KH * KW))
        arg[...] = first
        wins, tap = xp.empty((N, C, OH, OW), dtype=bool), xp.empty_like(arg)
    xs = split_columns(x, SW)
    taps = list(_taps(H, W, OH, OW, kernel, stride, padding, dilation))
    for t, o, i in taps:
        v, best = xs[i], out[o]
        if need_arg:
            # arg = t where v > best (strict: the first maximum keeps the win). Taps run in
            # increasing t and arg <= t on every output this tap reaches, so a branch-free
            # max(arg, wins * t) does it (a masked copyto is several times slower).
            xp.greater(v, best, out=wins[o])
            xp.multiply(wins[o], arg.dtype.type(t), out=tap[o])
            xp.maximum(arg[o], tap[o], out=arg[o])
        xp.maximum(best, v, out=best)  # NaN propagates, as PyTorch
    if need_arg and xp.isnan(out).any():
        # PyTorch takes ``val > max || isnan(val)``: the last NaN of the window wins.
        for t, o, i in taps:
            xp.copyto(arg[o], arg.dtype.type(t), where=xp.isnan(xs[i]))
    return out, arg


def max_pool2d_indices(arg, x_hw, kernel, stride, padding, dilation):
    """Flat index h*W + w into each input plane of every window's winning tap (int64).

    Window (oh, ow) starts at (oh*SH - PH, ow*SW - PW) and tap t = kh*KW + kw adds
    kh*DH*W + kw*DW, read from a (KH*KW + 1)-entry table instead of dividing arg.
    """
    xp = get_array_module(arg)
    H, W = x_hw
    OH, OW = arg.shape[-2:]
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    t = xp.arange(KH * KW + 1)
    table = (t // KW) * DH * W + (t % KW) * DW
    start = (xp.arange(OH) * SH - PH)[:, None] * W + (xp.arange(OW) * SW - PW)[None, :]
    idx = xp.take(table, arg) + start
    empty = arg == KH * KW
    if empty.any():
        # No in-bounds tap: PyTorch still reports its first stepped-over position.
        _, ph, _ = _first_tap(xp, H, OH, KH, SH, PH, DH)
        _, pw, _ = _first_tap(xp, W, OW, KW, SW, PW, DW)
        idx = xp.where(empty, ph[:, None] * W + pw[None, :], idx)
    return idx


def max_pool2d_backward(g, arg, x_shape, kernel, stride, padding, dilation):
    """Route each output gradient g (N, C, OH, OW) to its window's winning input pixel.

    One scatter-add over flat indices: overlapping windows that share a winner accumulate.
    """
    if _compiled_ok(g):
        return _max_pool2d_backward_nb(g, arg, x_shape, kernel, stride, padding, dilation)
    xp = get_array_module(g)
    idx = max_pool2d_indices(arg, x_shape[-2:], kernel, stride, padding, dilation)
    empty = arg == kernel[0] * kernel[1]
    if empty.any():  # windows with no in-bounds pixel send nothing anywhere
        g, idx = xp.where(empty, 0, g), xp.where(empty, 0, idx)
    return scatter_to_indices(g, idx, x_shape)


# ----- average pooling ---------------------------------------------------------------------
def avg_pool_divisor(xp, size, out, k, s, p, count_include_pad):
    """Per-output count along one axis, PyTorch's rule.

    The window [o*s - p, o*s - p + k) is first clipped to the padded input [-p, size + p)
    (ceil mode can push it past the right padding); count_include_pad counts that clipped
    extent, otherwise only the part inside [0, size).
    """
    start = xp.arange(out) * s - p
    end = xp.minimum(start + k, size + p)
    if count_include_pad:
        return end - start
    return xp.minimum(end, size) - xp.maximum(start, 0)


def avg_pool2d_forward(x, out_hw, kernel, stride, padding, divisor):
    """Average pooling: per-window sum over in-bounds taps / ``divisor`` ((OH, OW) or scalar)."""
    if _compiled_ok(x, divisor):
        return _avg_pool2d_nb(x, None, x.shape, out_hw, kernel, stride, padding, divisor)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_hw
    acc = xp.zeros((N, C, OH, OW), dtype=x.dtype)
    xs = split_columns(x, stride[1])
    for _, o, i in _taps(H, W, OH, OW, kernel, stride, padding, (1, 1)):
        acc[o] += xs[i]
    acc /= divisor
    return acc


def avg_pool2d_backward(g, x_shape, kernel, stride, padding, divisor):
    """Each input pixel gets g / divisor from every window (tap) that covers it."""
    if _compiled_ok(g, divisor):
        return _avg_pool2d_nb(None, g, x_shape, g.shape[-2:], kernel, stride, padding, divisor)
    xp = get_array_module(g)
    H, W = x_shape[-2:]
    OH, OW = g.shape[-2:]
    gd = g / divisor
    SW = stride[1]
    gxs = xp.zeros((SW,) + tuple(x_shape[:3]) + (-(-W // SW),), dtype=g.dtype)
    for _, o, i in _taps(H, W, OH, OW, kernel, stride, padding, (1, 1)):
        gxs[i] += gd[o]
    return merge_columns(gxs, W)


# ----- compiled paths (numba) --------------------------------------------------------------
# Per (n, c) plane, taps outermost as in the NumPy code: for tap (kh, kw) the outputs whose tap
# is inside the input form the rectangle [oh0, oh1) x [ow0, ow1) (``tap_range``), so the inner
# loops carry no bounds checks, and every output (or input pixel, backward) sees its taps in
# the NumPy code's order.


def _compiled_ok(a, divisor=None):
    if not enabled() or not usable(a):
        return False
    return divisor is None or getattr(divisor, "dtype", None) == a.dtype


def _tap_table(H, W, OH, OW, kernel, stride, padding, dilation):
    """(KH*KW, 6) int64 rows (oh0, oh1, ow0, ow1, phase, j0) per tap: the outputs it reaches
    inside the input (empty ranges for a tap wholly in the padding), and where output ow0
    reads: column phase ``phase`` (of ``split_columns``), position j0 in that phase."""
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    table = np.zeros((KH * KW, 6), dtype=np.int64)
    for kh in range(KH):
        rows = tap_range(H, OH, SH, PH, kh * DH)
        for kw in range(KW):
            cols = tap_range(W, OW, SW, PW, kw * DW)
            if rows is not None and cols is not None:
                c = cols[1].start  # input column of output ow0
                table[kh * KW + kw] = (rows[0].start, rows[0].stop, cols[0].start, cols[0].stop, c % SW, c // SW)
    return table


@jit(parallel=False)
def _split_plane(src, xs):
    """xs[r, :, j] = src[:, r + j*S]: a plane's S column phases (``split_columns``)."""
    S, H = xs.shape[0], xs.shape[1]
    W = src.shape[1]
    for r in range(S):
        for i in range(H):
            for j in range((W - r + S - 1) // S):
                xs[r, i, j] = src[i, r + j * S]


@jit
def _max_pool_fwd_nb(x, out, arg, first, need_arg, table, KW, SH, SW, DH, PH):
    """Taps outermost, like the NumPy code, over the plane split into SW column phases (as
    ``split_columns``, but per plane, in cache) so every inner loop reads unit-stride rows; the
    running maximum and winning tap are kept in plane buffers."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    Wq = -(-W // SW)
    for job in prange(N * C):
        n, c = job // C, job % C
        xs = np.empty((SW, H, Wq), dtype=x.dtype)
        _split_plane(x[n, c], xs)
        best = np.full((OH, OW), -np.inf, dtype=out.dtype)
        win = first.copy()  # int32: PyTorch's initial maxindex, or KH*KW for an empty window
        for t in range(table.shape[0]):
            oh0, oh1, ow0, ow1 = table[t, 0], table[t, 1], table[t, 2], table[t, 3]
            ph, j0 = table[t, 4], table[t, 5]  # tap t reads phase ph, columns j0 + (ow - ow0)
            dh = (t // KW) * DH - PH
            for oh in range(oh0, oh1):
                src = xs[ph, oh * SH + dh, j0 : j0 + ow1 - ow0]
                b, w = best[oh, ow0:ow1], win[oh, ow0:ow1]
                if need_arg:
                    for j in range(ow1 - ow0):
                        # PyTorch's ``val > max || isnan(val)``: the first maximum, the last
                        # NaN. Selects, not branches: which tap wins is unpredictable.
                        v = src[j]
                        take = (v > b[j]) | (v != v)
                        b[j] = v if take else b[j]
                        w[j] = t if take else w[j]
                else:
                    for j in range(ow1 - ow0):
                        v = src[j]
                        b[j] = v if (v > b[j]) | (v != v) else b[j]
        out[n, c] = best
        if need_arg:
            for oh in range(OH):
                for ow in range(OW):
                    arg[n, c, oh, ow] = win[oh, ow]


@jit
def _max_pool_bwd_nb(g, arg, gx, KH, KW, SH, SW, PH, PW, DH, DW):
    N, C = g.shape[0], g.shape[1]
    OH, OW = g.shape[2], g.shape[3]
    for job in prange(N * C):
        n, c = job // C, job % C
        gx[n, c] = 0
        for oh in range(OH):  # outputs in order, as add.at: shared winners sum in that order
            for ow in range(OW):
                t = arg[n, c, oh, ow]
                if t < KH * KW:
                    gx[n, c, oh * SH - PH + (t // KW) * DH, ow * SW - PW + (t % KW) * DW] += g[n, c, oh, ow]


@jit
def _avg_pool_fwd_nb(x, out, div, table, KW, SH, SW, PH):
    """Window sums tap by tap into a plane accumulator (unit-stride rows of the plane's column
    phases, as max pooling), then one division: the NumPy code's additions, in its order."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for job in prange(N * C):
        n, c = job // C, job % C
        xs = np.empty((SW, H, -(-W // SW)), dtype=x.dtype)
        _split_plane(x[n, c], xs)
        acc = np.zeros((OH, OW), dtype=out.dtype)
        for t in range(table.shape[0]):
            oh0, oh1, ow0, ow1, ph, j0 = table[t, 0], table[t, 1], table[t, 2], table[t, 3], table[t, 4], table[t, 5]
            dh = t // KW - PH
            for oh in range(oh0, oh1):
                dst, src = acc[oh, ow0:ow1], xs[ph, oh * SH + dh, j0 : j0 + ow1 - ow0]
                for j in range(ow1 - ow0):
                    dst[j] += src[j]
        for oh in range(OH):
            for ow in range(OW):
                out[n, c, oh, ow] = acc[oh, ow] / div[oh, ow]


@jit
def _avg_pool_bwd_nb(g, gx, div, table, KW, SH, SW, PH):
    """gd = g / divisor once, then tap by tap into the plane's column phases (each tap adds to
    distinct pixels), then the phases back into the plane."""
    N, C, H, W = gx.shape
    OH, OW = g.shape[2], g.shape[3]
    Wq = -(-W // SW)
    for job in prange(N * C):
        n, c = job // C, job % C
        gd = np.empty((OH, OW), dtype=g.dtype)
        for oh in range(OH):
            for ow in range(OW):
                gd[oh, ow] = g[n, c, oh, ow] / div[oh, ow]
        gxs = np.zeros((SW, H, Wq), dtype=gx.dtype)
        for t in range(table.shape[0]):
            oh0, oh1, ow0, ow1, ph, j0 = table[t, 0], table[t, 1], table[t, 2], table[t, 3], table[t, 4], table[t, 5]
            dh = t // KW - PH
            for oh in range(oh0, oh1):
                dst, src = gxs[ph, oh * SH + dh, j0 : j0 + ow1 - ow0], gd[oh, ow0:ow1]
                for j in range(ow1 - ow0):
                    dst[j] += src[j]
        for r in range(SW):
            for i in range(H):
                for j in range((W - r + SW - 1) // SW):
                    gx[n, c, i, r + j * SW] = gxs[r, i, j]


def _max_pool2d_forward_nb(x, out_hw, kernel, stride, padding, dilation, need_arg):
    N, C, H, W = x.shape
    (OH, OW), (KH, KW), (SH, SW) = out_hw, kernel, stride
    table = _tap_table(H, W, OH, OW, kernel, stride, padding, dilation)
    kh0, _, vh = _first_tap(np, H, OH, KH, SH, padding[0], dilation[0])
    kw0, _, vw = _first_tap(np, W, OW, KW, SW, padding[1], dilation[1])
    first = np.where(vh[:, None] & vw[None, :], kh0[:, None] * KW + kw0[None, :], KH * KW)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    arg = np.empty((N, C, OH, OW) if need_arg else (0, 0, 0, 0), dtype=_arg_dtype(np, KH * KW))
    _max_pool_fwd_nb.compiled(np.ascontiguousarray(x), out, arg, first.astype(np.int32), need_arg, table,
                              KW, SH, SW, dilation[0], padding[0])
    return out, (arg if need_arg else None)


def _max_pool2d_backward_nb(g, arg, x_shape, kernel, stride, padding, dilation):
    gx = np.empty(tuple(x_shape), dtype=g.dtype)
    _max_pool_bwd_nb.compiled(np.ascontiguousarray(g), np.ascontiguousarray(arg), gx, *kernel,
                              *stride, *padding, *dilation)
    return gx


def _avg_pool2d_nb(x, g, x_shape, out_hw, kernel, stride, padding, divisor):
    N, C, H, W = x_shape
    OH, OW = out_hw
    table = _tap_table(H, W, OH, OW, kernel, stride, padding, (1, 1))
    div = np.ascontiguousarray(np.broadcast_to(divisor, (OH, OW)))
    if g is None:
        out = np.empty((N, C, OH, OW), dtype=x.dtype)
        _avg_pool_fwd_nb.compiled(np.ascontiguousarray(x), out, div, table, kernel[1], *stride, padding[0])
    else:
        out = np.empty((N, C, H, W), dtype=g.dtype)
        _avg_pool_bwd_nb.compiled(np.ascontiguousarray(g), out, div, table, kernel[1], *stride, padding[0])
    return out


# ----- adaptive pooling --------------------------------------------------------------------
def adaptive_bins(xp, size, out):
    """PyTorch's bins: start = floor(i*size/out), end = ceil((i+1)*size/out)."""
    i = xp.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_avg_matrix(xp, size, out, dtype):
    """(out, size) matrix A with A[i, h] = 1/len(bin i) on bin i, so pooling one axis is A @ x."""
    start, end = adaptive_bins(xp, size, out)
    h = xp.arange(size)
    inside = (h[None, :] >= start[:, None]) & (h[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _pool_axes(x, Ah, Aw):
    """x (..., H, W) -> Ah @ x @ Aw^T (..., OH, OW), as two single GEMMs via tensordot.

    (A broadcast ``matmul`` would run one tiny product per (n, c) plane.)
    """
    xp = get_array_module(x)
    y = xp.tensordot(x, Aw, axes=([-1], [1]))  # (..., H, OW)
    y = xp.tensordot(y, Ah, axes=([-2], [1]))  # (..., OW, OH)
    return xp.ascontiguousarray(xp.swapaxes(y, -1, -2))


def _tiles(shape, out_hw):
    """(KH, KW) when the adaptive bins tile an (H, W) input exactly, else None."""
    (H, W), (OH, OW) = shape[-2:], out_hw
    if OH and OW and H % OH == 0 and W % OW == 0:
        return H // OH, W // OW
    return None


def adaptive_avg_pool2d_forward(x, out_hw):
    """Adaptive average pooling: a plain mean over tiles when the bins tile the input
    (global pooling included), else a product with one averaging matrix per axis."""
    xp = get_array_module(x)
    H, W = x.shape[-2:]
    OH, OW = out_hw
    tiles = _tiles(x.shape, out_hw)
    if tiles is not None:
        return x.reshape(x.shape[:-2] + (OH, tiles[0], OW, tiles[1])).mean(axis=(-3, -1))
    Ah = adaptive_avg_matrix(xp, H, OH, x.dtype)
    Aw = adaptive_avg_matrix(xp, W, OW, x.dtype)
    return _pool_axes(x, Ah, Aw)


def adaptive_avg_pool2d_backward(g, x_shape):
    """Transpose of the forward: g / (KH*KW) spread over each tile, or A_h^T @ g @ A_w."""
    xp = get_array_module(g)
    H, W = x_shape[-2:]
    OH, OW = g.shape[-2:]
    tiles = _tiles(x_shape, (OH, OW))
    if tiles is not None:
        KH, KW = tiles
        share = (g / (KH * KW))[..., :, None, :, None]  # (..., OH, 1, OW, 1)
        return xp.broadcast_to(share, g.shape[:-2] + (OH, KH, OW, KW)).reshape(x_shape)
    Ah = adaptive_avg_matrix(xp, H, OH, g.dtype)
    Aw = adaptive_avg_matrix(xp, W, OW, g.dtype)
    return _pool_axes(g, Ah.T, Aw.T)


def _running_max(xp, best, best_i, v, v_i):
    """One scan step of PyTorch's ``if (val > max || isnan(val))``: first max, last NaN."""
    take = (v > best) | xp.isnan(v)
    return xp.where(take, v, best), xp.where(take, v_i, best_i)


def adaptive_max_pool2d_forward(x, out_hw):
    """Adaptive max pooling -> (out (N, C, OH, OW), flat indices h*W + w, int64).

    Max is separable: first the max over each W-bin of every row, then over each H-bin of
    those row maxima, so a bin of LH x LW pixels costs LH + LW gathers instead of LH * LW.
    Scanning rows then columns in order with the first-max/last-NaN rule picks the same pixel
    as PyTorch's row-major scan. Short bins repeat their last pixel, which never wins a tie.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_hw
    if OH == 0 or OW == 0:
        return xp.empty((N, C, OH, OW), x.dtype), xp.empty((N, C, OH, OW), xp.int64)
    if _tiles(x.shape, out_hw) is not None:
        return _uniform_max_pool(x, out_hw)
    sw, ew = adaptive_bins(xp, W, OW)
    rmax = rarg = None
    for b in range(int((ew - sw).max())):
        cols = xp.minimum(sw + b, ew - 1)
        v = x[..., cols]  # (N, C, H, OW)
        if rmax is None:
            rmax, rarg = v, xp.broadcast_to(cols, v.shape)
        else:
            rmax, rarg = _running_max(xp, rmax, rarg, v, cols)
    sh, eh = adaptive_bins(xp, H, OH)
    out = idx = None
    for a in range(int((eh - sh).max())):
        rows = xp.minimum(sh + a, eh - 1)
        v, v_i = rmax[:, :, rows, :], rows[:, None] * W + rarg[:, :, rows, :]
        if out is None:
            out, idx = v, v_i
        else:
            out, idx = _running_max(xp, out, idx, v, v_i)
    return out, idx.astype(xp.int64)


def _uniform_max_pool(x, out_hw):
    """Adaptive max when the bins tile the input exactly (global pooling, 14 -> 7, ...).

    Each bin becomes one row of a (N, C, OH, OW, KH*KW) array and ``argmax`` finds its first
    maximum; only NaN needs a fix-up, since PyTorch reports the last NaN and NumPy the first.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_hw
    KH, KW = H // OH, W // OW
    win = x.reshape(N, C, OH, KH, OW, KW).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, OH, OW, -1)
    j = xp.argmax(win, axis=-1)
    nan = xp.isnan(win)
    if nan.any():
        last_nan = KH * KW - 1 - xp.argmax(nan[..., ::-1], axis=-1)
        j = xp.where(nan.any(axis=-1), last_nan, j)
    out = xp.take_along_axis(win, j[..., None], axis=-1)[..., 0]
    rows = (xp.arange(OH) * KH)[:, None] + j // KW
    cols = (xp.arange(OW) * KW)[None, :] + j % KW
    return out, (rows * W + cols).astype(xp.int64)


def scatter_to_indices(g, idx, x_shape):
    """gx (x_shape) with g[n, c, i, j] added at gx[n, c].flat[idx[n, c, i, j]].

    Repeated indices accumulate (``add.at``, unbuffered, in g's dtype as PyTorch).
    """
    xp = get_array_module(g)
    N, C, H, W = x_shape
    plane = (xp.arange(N * C, dtype=xp.int64) * (H * W)).reshape(N, C, 1, 1)
    flat = idx + plane
    gx = xp.zeros(N * C * H * W, dtype=g.dtype)
    xp.add.at(gx, flat.ravel(), g.ravel())
    return gx.reshape(x_shape)
