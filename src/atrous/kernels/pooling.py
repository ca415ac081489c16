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
"""
from __future__ import annotations

from ..backend import get_array_module


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
            xp.copyto(arg[o], t, where=xp.isnan(xs[i]))
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
    xp = get_array_module(g)
    H, W = x_shape[-2:]
    OH, OW = g.shape[-2:]
    gd = g / divisor
    SW = stride[1]
    gxs = xp.zeros((SW,) + tuple(x_shape[:3]) + (-(-W // SW),), dtype=g.dtype)
    for _, o, i in _taps(H, W, OH, OW, kernel, stride, padding, (1, 1)):
        gxs[i] += gd[o]
    return merge_columns(gxs, W)


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
