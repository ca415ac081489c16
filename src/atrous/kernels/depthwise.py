"""Direct depthwise convolution (groups == input channels) and its two gradients.

A depthwise convolution gives every input channel its own ``M`` filters (the channel
multiplier; ``M = 1`` is MobileNet's usual case), so it has no reduction over channels and
im2col + GEMM degenerates into C tiny matrix products. Here it is computed directly, one kernel
tap at a time, as a multiply-accumulate over a shifted view of the padded input.

Shapes::

    x:  (N, C, H, W)      w: (C*M, 1, KH, KW)      y, gy: (N, C*M, OH, OW)
    output channel o = c*M + m reads input channel c = o // M
    y[n, o, oh, ow] = sum_{kh, kw} w[o, 0, kh, kw] * xpad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]
    OH = (H + top + bottom - DH*(KH-1) - 1) // SH + 1, likewise OW

``padding`` is ``((top, bottom), (left, right))``; a negative amount crops, as in
``atrous.kernels.conv_gemm``.

Two implementations give the same numbers:

* NumPy (the reference, and the path whenever numba is missing or disabled): channels-last.
  The input is copied once into a zero-padded (N, Hp, Wp, C) array; each tap is then one
  multiply and one add over (N, OH, OW, C, M) arrays whose innermost axis is contiguous at
  any stride (measured 10-20% faster than the same taps in NCHW on the (8, 128, 56, 56) 3x3
  layer, transposes included). The gradients are the same loop over taps: the input gradient adds
  each tap's ``gy * w`` into a shifted view of a padded gradient, the weight gradient sums
  ``gy * x_tap`` over (n, oh, ow).
* numba (``atrous[fast]``): NCHW, one (n, c) image plane at a time on each core. The plane
  is copied into a small zero-padded buffer (split into stride phases) that stays in cache,
  where every tap is one unit-stride multiply-add over the whole plane, three taps per pass
  (see the comment above ``_copy``). The backward computes both gradients in one pass over gy
  and x (``depthwise_backward``; conv2d's backward calls it through
  ``algorithms.run_backward``). The forward adds the taps of each output in the same order as
  NumPy (kh, then kw, from 0), so the two forwards agree bitwise; so do the input gradients
  when M == 1. The weight gradients agree to float32 rounding: each is a blocked float32 sum
  per image, added over images in float64 -- more accurate than NumPy's sums.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._numba import enabled, get_threads, jit, prange, usable
from .im2col import output_size

_ZERO = ((0, 0), (0, 0))


def _geometry(x_shape, w_shape, stride, padding, dilation):
    N, C, H, W = x_shape
    O, one, KH, KW = w_shape
    if one != 1 or O % C:
        raise ValueError(
            f"depthwise: weight must be (C*M, 1, KH, KW) for an input with C={C} channels, got {tuple(w_shape)}"
        )
    OH, OW = output_size((H, W), (KH, KW), stride, padding, dilation)
    return N, C, H, W, O // C, KH, KW, OH, OW


def _norm(stride, padding, dilation):
    return tuple(stride), tuple(tuple(p) for p in padding), tuple(dilation)


# ----- NumPy (reference) ----------------------------------------------------------------------
def _pad_nhwc(x, padding):
    """(N, C, H, W) -> zero-padded channels-last (N, H+t+b, W+l+r, C); negative pads crop.

    Input row i lands on padded row i + t (likewise columns), whatever the signs.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (t, b), (l, r) = padding
    out = xp.zeros((N, H + t + b, W + l + r, C), dtype=x.dtype)
    i0, i1, j0, j1 = max(0, -t), min(H, H + b), max(0, -l), min(W, W + r)
    out[:, i0 + t : i1 + t, j0 + l : j1 + l] = x[:, :, i0:i1, j0:j1].transpose(0, 2, 3, 1)
    return out


def _tap(a, kh, kw, out_hw, stride, dilation):
    """View (N, OH, OW, ...) of padded channels-last ``a`` read by tap (kh, kw)."""
    (OH, OW), (SH, SW), (DH, DW) = out_hw, stride, dilation
    h0, w0 = kh * DH, kw * DW
    return a[:, h0 : h0 + SH * (OH - 1) + 1 : SH, w0 : w0 + SW * (OW - 1) + 1 : SW]


def _forward_numpy(x, w, stride, padding, dilation):
    xp = get_array_module(x, w)
    N, C, H, W, M, KH, KW, OH, OW = _geometry(x.shape, w.shape, stride, padding, dilation)
    xpad = _pad_nhwc(x, padding)[..., None]  # (N, Hp, Wp, C, 1)
    wt = w.reshape(C, M, KH, KW)
    y = xp.zeros((N, OH, OW, C, M), dtype=x.dtype)
    tmp = xp.empty_like(y)
    for kh in range(KH):
        for kw in range(KW):
            xp.multiply(_tap(xpad, kh, kw, (OH, OW), stride, dilation), wt[:, :, kh, kw], out=tmp)
            y += tmp
    return xp.ascontiguousarray(y.reshape(N, OH, OW, C * M).transpose(0, 3, 1, 2))


def _input_grad_numpy(gy, w, x_shape, stride, padding, dilation):
    xp = get_array_module(gy, w)
    N, C, H, W, M, KH, KW, OH, OW = _geometry(x_shape, w.shape, stride, padding, dilation)
    (t, b), (l, r) = padding
    g = gy.reshape(N, C, M, OH, OW).transpose(0, 3, 4, 1, 2)  # (N, OH, OW, C, M) view
    wt = w.reshape(C, M, KH, KW)
    gpad = xp.zeros((N, H + t + b, W + l + r, C), dtype=gy.dtype)
    tmp = xp.empty((N, OH, OW, C, M), dtype=gy.dtype)
    g = xp.ascontiguousarray(g)
    for kh in range(KH):
        for kw in range(KW):
            xp.multiply(g, wt[:, :, kh, kw], out=tmp)
            # Within one tap no two outputs read the same pixel, so a sliced += accumulates.
            _tap(gpad, kh, kw, (OH, OW), stride, dilation)[...] += tmp[..., 0] if M == 1 else tmp.sum(axis=-1)
    gx = xp.zeros((N, C, H, W), dtype=gy.dtype)  # cropped pixels (negative padding) get zero
    i0, i1, j0, j1 = max(0, -t), min(H, H + b), max(0, -l), min(W, W + r)
    gx[:, :, i0:i1, j0:j1] = gpad[:, i0 + t : i1 + t, j0 + l : j1 + l].transpose(0, 3, 1, 2)
    return gx


def _weight_grad_numpy(x, gy, w_shape, stride, padding, dilation):
    xp = get_array_module(x, gy)
    N, C, H, W, M, KH, KW, OH, OW = _geometry(x.shape, w_shape, stride, padding, dilation)
    xpad = _pad_nhwc(x, padding)[..., None]
    g = xp.ascontiguousarray(gy.reshape(N, C, M, OH, OW).transpose(0, 3, 4, 1, 2))
    gw = xp.empty((C, M, KH, KW), dtype=x.dtype)
    tmp = xp.empty_like(g)
    for kh in range(KH):
        for kw in range(KW):
            xp.multiply(g, _tap(xpad, kh, kw, (OH, OW), stride, dilation), out=tmp)
            gw[:, :, kh, kw] = tmp.reshape(-1, C, M).sum(axis=0)
    return gw.reshape(C * M, 1, KH, KW)


# ----- numba --------------------------------------------------------------------------------
# Flat grids. An (n, c) plane is copied into a zero-padded buffer split into SH*SW phases
# (phase (ph, pw) holds padded pixels (ph + SH*i, pw + SW*j)), each stored flat with row pitch
# Wq = ceil(Wp / SW); with stride 1 there is one phase, the padded plane itself. Tap (kh, kw) of
# output (oh, ow) reads padded pixel (oh*SH + kh*DH, ow*SW + kw*DW), which is phase
# ((kh*DH) % SH, (kw*DW) % SW) at flat index oh*Wq + ow + (kh*DH // SH)*Wq + kw*DW // SW: a
# constant shift of the output's own index j = oh*Wq + ow on an (OH, Wq) grid. So every tap is
# one unit-stride loop over the whole grid, at any stride (the Wq - OW extra columns per row are
# computed and thrown away) -- a loop long enough for LLVM's vector body (16 float32 lanes,
# unrolled 4 times), which a single output row of 56 pixels is not. A plane's buffers stay in L1.
# Indices inside the hot loops run from 0 over views: an index like ``s + j`` with a run-time
# ``s`` makes numba test it for wraparound on every element, which stops the vectoriser.
#
# Forward: the taps of each output go three at a time (``_fma3``: one load and store of the
# accumulator per three taps), added left to right in NumPy's order (kh, then kw, from 0), so
# the sums round exactly as the NumPy path's (measured 1.8x faster than one tap per pass).
# Input gradient, stride 1: the transposed taps gathered the same way, three per pass, padded
# pixel j taking w[k] * gy_grid[j - s_k]; other strides scatter, each tap adding w * gy into its
# shifted view of the phase buffer. Both add in NumPy's order (bitwise equal when M == 1).
# Weight gradient: per image and tap, one dot product of gy with the tap's view of x (``_dot``,
# a blocked float32 sum in vector registers), added up over images in float64.


@jit(parallel=False, inline="always")
def _copy(dst, src):
    """dst[:] = src over two 1-D views of equal length (a loop LLVM vectorises)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@jit(parallel=False, inline="always")
def _copy_add(dst, src, a):
    """dst[:] = src + a over two 1-D views of equal length."""
    for j in range(dst.shape[0]):
        dst[j] = src[j] + a


@jit(parallel=False, inline="always")
def _axpy(y, a, x):
    """y += a * x over two 1-D views of equal length."""
    for j in range(y.shape[0]):
        y[j] += a * x[j]


@jit(parallel=False, inline="always")
def _fma2(y, a0, x0, a1, x1):
    """y = (y + a0*x0) + a1*x1 elementwise: two taps, one pass."""
    for j in range(y.shape[0]):
        y[j] = (y[j] + a0 * x0[j]) + a1 * x1[j]


@jit(parallel=False, inline="always")
def _fma3(y, a0, x0, a1, x1, a2, x2):
    """y = ((y + a0*x0) + a1*x1) + a2*x2 elementwise: three taps, one pass."""
    for j in range(y.shape[0]):
        y[j] = ((y[j] + a0 * x0[j]) + a1 * x1[j]) + a2 * x2[j]


@jit(parallel=False, fastmath={"reassoc"})
def _dot(a, b):
    """sum(a * b) over two 1-D views of equal length, in a's dtype. Allowing reassociation
    lets LLVM keep 64 partial sums in vector registers (a blocked sum: fast, and more
    accurate than one running sum); this flag is set for this loop alone."""
    s = a.dtype.type(0)
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


@jit(parallel=False, inline="always")
def _tap_at(k, KW, SH, SW, DH, DW, Wq):
    """(phase, shift) of tap k = kh*KW + kw on the flat grid (see above)."""
    kh, kw = k // KW, k % KW
    return ((kh * DH) % SH) * SW + (kw * DW) % SW, ((kh * DH) // SH) * Wq + (kw * DW) // SW


@jit(parallel=False, inline="always")
def _taps(acc, wo, buf, base, sign, KW, SH, SW, DH, DW, Wq):
    """acc += sum over taps k, ascending, of wo[k] * buf[p_k, base + sign*s_k :][:len(acc)]
    ((p_k, s_k) = ``_tap_at(k)``): sign +1 is the forward's gather, sign -1 (stride 1) the
    input gradient's, which reads gy shifted back by each tap."""
    L, K = acc.shape[0], wo.shape[0]
    for k in range(0, K - K % 3, 3):
        p0, s0 = _tap_at(k, KW, SH, SW, DH, DW, Wq)
        p1, s1 = _tap_at(k + 1, KW, SH, SW, DH, DW, Wq)
        p2, s2 = _tap_at(k + 2, KW, SH, SW, DH, DW, Wq)
        s0, s1, s2 = base + sign * s0, base + sign * s1, base + sign * s2
        _fma3(acc, wo[k], buf[p0, s0 : s0 + L], wo[k + 1], buf[p1, s1 : s1 + L], wo[k + 2], buf[p2, s2 : s2 + L])
    k = K - K % 3
    if K % 3 == 2:
        p0, s0 = _tap_at(k, KW, SH, SW, DH, DW, Wq)
        p1, s1 = _tap_at(k + 1, KW, SH, SW, DH, DW, Wq)
        s0, s1 = base + sign * s0, base + sign * s1
        _fma2(acc, wo[k], buf[p0, s0 : s0 + L], wo[k + 1], buf[p1, s1 : s1 + L])
    elif K % 3 == 1:
        p0, s0 = _tap_at(k, KW, SH, SW, DH, DW, Wq)
        s0 = base + sign * s0
        _axpy(acc, wo[k], buf[p0, s0 : s0 + L])


@jit(parallel=False, inline="always")
def _weight_taps(gw, g, buf, KW, SH, SW, DH, DW, Wq):
    """gw[k] += sum(g * (tap k's shifted view of buf)) for every tap k, added in float64."""
    L = g.shape[0]
    for k in range(gw.shape[0]):
        p, s = _tap_at(k, KW, SH, SW, DH, DW, Wq)
        gw[k] += _dot(g, buf[p, s : s + L])


@jit(parallel=False, inline="always")
def _split_phases(src, buf, t, l, SH, SW, Hp, Wp, Wq):
    """Copy plane src (H, W) into the zeroed phase buffer: src pixel (i, j) is padded pixel
    (i + t, j + l); pixels that a negative padding crops are left out."""
    H, W = src.shape
    i0, i1, j0, j1 = max(0, -t), min(H, Hp - t), max(0, -l), min(W, Wp - l)
    if SH == 1 and SW == 1:  # one phase: unit-stride copies of the rows (no divisions)
        row = buf[0]
        for i in range(i0, i1):
            q = (i + t) * Wq + l
            _copy(row[q + j0 : q + j1], src[i, j0:j1])
        return
    for i in range(i0, i1):
        r = i + t
        ph, q = (r % SH) * SW, (r // SH) * Wq
        for j in range(j0, j1):
            buf[ph + (j + l) % SW, q + (j + l) // SW] = src[i, j]


@jit(parallel=False, inline="always")
def _merge_phases(buf, dst, t, l, SH, SW, Hp, Wp, Wq):
    """Inverse of _split_phases: dst (H, W) from the phase buffer; cropped pixels get 0."""
    H, W = dst.shape
    i0, i1, j0, j1 = max(0, -t), min(H, Hp - t), max(0, -l), min(W, Wp - l)
    if i0 > 0 or i1 < H or j0 > 0 or j1 < W:
        dst[:] = 0
    if SH == 1 and SW == 1:
        row = buf[0]
        for i in range(i0, i1):
            q = (i + t) * Wq + l
            _copy(dst[i, j0:j1], row[q + j0 : q + j1])
        return
    for i in range(i0, i1):
        r = i + t
        ph, q = (r % SH) * SW, (r // SH) * Wq
        for j in range(j0, j1):
            dst[i, j] = buf[ph + (j + l) % SW, q + (j + l) // SW]


@jit(parallel=False)
def _forward_planes(x, w, b, y, job0, job1, KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size):
    """Planes job0 <= n*C + c < job1 of the forward, with buffers of their own (made once; the
    padding in them stays zero from plane to plane). ``b`` (C*M,) is added as the rows are
    written out (an empty ``b``: no bias): conv first, then + b, as NumPy's ``y += b``."""
    C = x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    M = w.shape[0] // C
    L = OH * Wq
    xb = np.zeros((SH * SW, size), dtype=x.dtype)
    acc = np.empty(L, dtype=y.dtype)
    for job in range(job0, job1):
        n, c = job // C, job % C
        _split_phases(x[n, c], xb, t, l, SH, SW, Hp, Wp, Wq)
        for m in range(M):
            o = c * M + m
            acc[:] = 0
            _taps(acc, w[o], xb, 0, 1, KW, SH, SW, DH, DW, Wq)
            if b.shape[0]:
                bo = b[o]
                for oh in range(OH):
                    _copy_add(y[n, o, oh], acc[oh * Wq : oh * Wq + OW], bo)
            else:
                for oh in range(OH):
                    _copy(y[n, o, oh], acc[oh * Wq : oh * Wq + OW])


@jit
def _forward_nb(x, w, b, y, KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size, chunks):
    """y (N, C*M, OH, OW) of x (N, C, H, W) by w (C*M, KH*KW): the (n, c) planes in
    ``chunks`` runs. (The work is a separate function: inside a parallel loop's body numba's
    code came out measurably slower.)"""
    jobs = x.shape[0] * x.shape[1]
    for chunk in prange(chunks):
        _forward_planes(x, w, b, y, chunk * jobs // chunks, (chunk + 1) * jobs // chunks,
                        KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size)


@jit(parallel=False)
def _backward_planes(x, gy, w, gx, gw, c, n0, n1, need_gx, need_gw, KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size):
    """Both gradients for input channel c over images n0 <= n < n1: gx[n, c] planes, and
    gw (M, KH*KW) += the weight-gradient sums (float64)."""
    C, K = gx.shape[1], w.shape[1]
    OH, OW = gy.shape[2], gy.shape[3]
    M = w.shape[0] // C
    L, Lg = OH * Wq, Hp * Wq  # the output grid, and the padded input grid (stride 1)
    # gy on the (OH, Wq) grid (zero in the extra columns) is ge = gb_src[0, F : F + L]. With
    # stride 1 the input gradient gathers: padded pixel j takes w[k] * ge[j - s_k], read from
    # F = (largest shift) on, so every view starts at >= 0 and the margins read zeros;
    # otherwise it scatters each tap's w * ge into the phase buffer (NumPy's order either way).
    unit = SH == 1 and SW == 1
    F = ((K - 1) // KW * DH) * Wq + ((K - 1) % KW) * DW if unit else 0
    src = np.zeros((1, F + max(L, Lg)), dtype=gy.dtype)
    ge = src[0, F : F + L]
    xb = np.zeros((SH * SW, size), dtype=gy.dtype)  # phases of the padded x plane
    gb = np.zeros((SH * SW, size), dtype=gy.dtype)  # phases of the padded gradient
    for n in range(n0, n1):
        if need_gw:
            _split_phases(x[n, c], xb, t, l, SH, SW, Hp, Wp, Wq)
        if need_gx:
            gb[:] = 0
        for m in range(M):
            o = c * M + m
            for oh in range(OH):
                _copy(ge[oh * Wq : oh * Wq + OW], gy[n, o, oh])
            if need_gx and unit:
                _taps(gb[0, :Lg], w[o], src, F, -1, KW, SH, SW, DH, DW, Wq)
            elif need_gx:
                for k in range(K):
                    p, s = _tap_at(k, KW, SH, SW, DH, DW, Wq)
                    _axpy(gb[p, s : s + L], w[o, k], ge)
            if need_gw:
                _weight_taps(gw[m], ge, xb, KW, SH, SW, DH, DW, Wq)
        if need_gx:
            _merge_phases(gb, gx[n, c], t, l, SH, SW, Hp, Wp, Wq)


@jit
def _backward_nb(x, gy, w, gx, part, need_gx, need_gw, KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size, NB):
    """Both gradients in one pass over gy (and x). Task (c, b) owns input channel c and the
    b-th of NB runs of images, so its gx planes are its own (race-free) and its float64
    weight-gradient sums are ``part[task]`` (M, KH*KW), added up by the caller. An array that
    is not needed is passed empty (gx keeps its channel count), so shapes come from gy."""
    N, C = gy.shape[0], gx.shape[1]
    for task in prange(C * NB):
        c, b = task // NB, task % NB
        _backward_planes(x, gy, w, gx, part[task], c, b * N // NB, (b + 1) * N // NB, need_gx, need_gw,
                         KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size)


def _use_numba(a, b):
    """The compiled kernels take NumPy float arrays of one dtype; anything else -> NumPy."""
    return enabled() and usable(a, b) and a.dtype == b.dtype


def _grid(x_shape, w_shape, stride, padding, dilation):
    """(Hp, Wp, Wq, size): padded size, grid pitch, and the length of one phase buffer (every
    tap's view of OH*Wq elements fits in it)."""
    N, C, H, W, M, KH, KW, OH, OW = _geometry(x_shape, w_shape, stride, padding, dilation)
    (SH, SW), ((t, b), (l, r)), (DH, DW) = stride, padding, dilation
    Hp, Wp = H + t + b, W + l + r
    Hq, Wq = -(-Hp // SH), -(-Wp // SW)
    size = max(Hq * Wq, ((KH - 1) * DH // SH) * Wq + (KW - 1) * DW // SW + OH * Wq)
    return Hp, Wp, Wq, size


def _threads():
    return get_threads() or 1


def _forward_nb_call(x, w, y, stride, padding, dilation, bias=None):
    (SH, SW), ((t, _), (l, _)), (DH, DW) = stride, padding, dilation
    Hp, Wp, Wq, size = _grid(x.shape, w.shape, stride, padding, dilation)
    O, _, KH, KW = w.shape
    x, w2 = np.ascontiguousarray(x), np.ascontiguousarray(w.reshape(O, KH * KW))
    b = np.empty(0, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    # A few runs per thread (load balance), each allocating its buffers once.
    chunks = max(1, min(x.shape[0] * x.shape[1], 4 * _threads()))
    _forward_nb.compiled(x, w2, b, y, KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size, chunks)
    return y


def _backward_nb_call(x, gy, w, x_shape, stride, padding, dilation, need_gx, need_gw):
    (SH, SW), ((t, _), (l, _)), (DH, DW) = stride, padding, dilation
    N, C, H, W = x_shape
    O, _, KH, KW = w.shape
    Hp, Wp, Wq, size = _grid(x_shape, w.shape, stride, padding, dilation)
    gy, w2 = np.ascontiguousarray(gy), np.ascontiguousarray(w.reshape(O, KH * KW))
    x = np.ascontiguousarray(x) if need_gw else np.empty((0, 0, 0, 0), gy.dtype)
    gx = np.empty(x_shape, dtype=gy.dtype) if need_gx else np.empty((0, C, 0, 0), gy.dtype)
    # Runs of images per channel: enough tasks for every thread even when C is small. Each task
    # keeps its own weight-gradient lanes; without a weight gradient, one task per plane.
    NB = min(N, -(-4 * _threads() // C)) if need_gw else N
    part = np.zeros((C * NB, O // C, KH * KW) if need_gw else (C * NB, 0, 0), np.float64)
    _backward_nb.compiled(x, gy, w2, gx, part, need_gx, need_gw, KW, SH, SW, t, l, DH, DW, Hp, Wp, Wq, size, NB)
    gw = None
    if need_gw:
        gw = part.reshape(C, NB, O // C, KH * KW).sum(axis=1).astype(gy.dtype).reshape(O, 1, KH, KW)
    return (gx if need_gx else None), gw


# ----- public -------------------------------------------------------------------------------
def depthwise_forward(x, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1), bias=None):
    """Depthwise convolution y (N, C*M, OH, OW) of x (N, C, H, W) by w (C*M, 1, KH, KW), plus
    ``bias`` (C*M,) if given (added after the sum, in the same pass as the output is written).

    Equal to ``conv_gemm.forward(x, w, stride, padding, dilation, groups=C)`` (+ bias).

    >>> import numpy as np
    >>> depthwise_forward(np.ones((1, 2, 4, 4)), np.ones((4, 1, 3, 3)), padding=((1, 1), (1, 1)))[0, :, 0, 0]
    array([4., 4., 4., 4.])
    """
    stride, padding, dilation = _norm(stride, padding, dilation)
    N, C, H, W, M, KH, KW, OH, OW = _geometry(x.shape, w.shape, stride, padding, dilation)
    if not _use_numba(x, w):
        y = _forward_numpy(x, w, stride, padding, dilation)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)
        return y
    return _forward_nb_call(x, w, np.empty((N, C * M, OH, OW), x.dtype), stride, padding, dilation, bias)


def depthwise_input_grad(gy, w, x_shape, stride=(1, 1), padding=_ZERO, dilation=(1, 1)):
    """dL/dx (x_shape = (N, C, H, W)) of ``y = depthwise_forward(x, w, ...)`` given gy = dL/dy."""
    stride, padding, dilation = _norm(stride, padding, dilation)
    x_shape = tuple(x_shape)
    _geometry(x_shape, w.shape, stride, padding, dilation)
    if not _use_numba(gy, w):
        return _input_grad_numpy(gy, w, x_shape, stride, padding, dilation)
    return _backward_nb_call(None, gy, w, x_shape, stride, padding, dilation, True, False)[0]


def depthwise_weight_grad(x, gy, w_shape, stride=(1, 1), padding=_ZERO, dilation=(1, 1)):
    """dL/dw (w_shape = (C*M, 1, KH, KW)) of ``y = depthwise_forward(x, w, ...)`` given gy."""
    stride, padding, dilation = _norm(stride, padding, dilation)
    w_shape = tuple(w_shape)
    _geometry(x.shape, w_shape, stride, padding, dilation)
    if not _use_numba(x, gy):
        return _weight_grad_numpy(x, gy, w_shape, stride, padding, dilation)
    w = np.empty(w_shape, dtype=gy.dtype)  # only its shape is read when the input grad is off
    return _backward_nb_call(x, gy, w, x.shape, stride, padding, dilation, False, True)[1]


def depthwise_backward(x, gy, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1),
                       need_input_grad=True, need_weight_grad=True):
    """(dL/dx or None, dL/dw or None) together: with numba, one pass over gy and x
    instead of two (the results equal ``depthwise_input_grad`` and ``depthwise_weight_grad``)."""
    stride, padding, dilation = _norm(stride, padding, dilation)
    _geometry(x.shape, w.shape, stride, padding, dilation)
    if not _use_numba(gy, w) or not usable(x) or x.dtype != gy.dtype:
        gx = _input_grad_numpy(gy, w, x.shape, stride, padding, dilation) if need_input_grad else None
        gw = _weight_grad_numpy(x, gy, w.shape, stride, padding, dilation) if need_weight_grad else None
        return gx, gw
    if not (need_input_grad or need_weight_grad):
        return None, None
    return _backward_nb_call(x, gy, w, x.shape, stride, padding, dilation, need_input_grad, need_weight_grad)


def is_depthwise(x_shape, w_shape, groups):
    """True when a grouped convolution is depthwise: one input channel per group."""
    return groups > 1 and groups == x_shape[1] and w_shape[1] == 1


__all__ = ["depthwise_forward", "depthwise_input_grad", "depthwise_weight_grad", "depthwise_backward", "is_depthwise"]
