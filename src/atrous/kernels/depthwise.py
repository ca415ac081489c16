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
  where every tap is one unit-stride multiply-add over the whole plane (see the comment above
  ``_forward_nb``). The backward computes both gradients in one pass over gy and x
  (``depthwise_backward``). The forward adds the taps of each output in the same order as
  NumPy (kh, then kw, from 0), so the two forwards agree bitwise; so do the input gradients
  when M == 1; the weight gradients agree to float32 rounding (their sums run in another order).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._numba import enabled, get_threads, jit, prange, usable
from .im2col import output_size

_ZERO = ((0, 0), (0, 0))
LANES = 512  # partial sums per tap in the compiled weight gradient


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
# One long loop per tap. An (n, c) plane is copied into a zero-padded buffer split into
# SH*SW phases (phase (ph, pw) holds padded pixels (ph + SH*i, pw + SW*j)), each stored flat
# with row pitch Wq = ceil(Wp / SW) plus a little slack at the end. Tap (kh, kw) of output
# (oh, ow) reads padded pixel (oh*SH + kh*DH, ow*SW + kw*DW), which is phase
# ((kh*DH) % SH, (kw*DW) % SW) at flat index oh*Wq + ow + (kh*DH // SH)*Wq + kw*DW // SW: a
# constant shift of the output's own flat index on an (OH, Wq) grid. So a tap is a single
# unit-stride multiply-add over OH*Wq elements, at any stride (the Wq - OW extra columns per
# row are computed and thrown away). A plane's buffers stay in L1/L2. The taps of each
# output are added in the same order as the NumPy path, from zero.


@jit(parallel=False)
def _axpy(y, a, x):
    """y += a * x over two 1-D views of equal length (unit-stride views starting at 0 are
    what lets the compiler emit SIMD code for it)."""
    for j in range(y.shape[0]):
        y[j] += a * x[j]


@jit(parallel=False)
def _mul_acc(acc, a, b):
    """acc += a * b elementwise over three 1-D views of equal length."""
    for j in range(acc.shape[0]):
        acc[j] += a[j] * b[j]


@jit(parallel=False)
def _split_phases(src, buf, t, l, SH, SW, Hp, Wp, Wq):
    """Copy plane src (H, W) into the zeroed phase buffer: src pixel (i, j) is padded pixel
    (i + t, j + l); pixels that a negative padding crops are left out."""
    H, W = src.shape
    j0, j1 = max(0, -l), min(W, Wp - l)
    for i in range(max(0, -t), min(H, Hp - t)):
        r = i + t
        for pw in range(SW):
            js = j0 + (pw - (j0 + l)) % SW  # first kept column in this column phase
            if js >= j1:
                continue
            n = (j1 - js - 1) // SW + 1
            q = (r // SH) * Wq + (js + l) // SW
            if SW == 1:  # a unit-stride slice copies as one block
                buf[r % SH, q : q + n] = src[i, js : js + n]
            else:
                buf[(r % SH) * SW + pw, q : q + n] = src[i, js : js + (n - 1) * SW + 1 : SW]


@jit(parallel=False)
def _merge_phases(buf, dst, t, l, SH, SW, Hp, Wp, Wq):
    """Inverse of _split_phases: dst (H, W) from the phase buffer; cropped pixels get 0."""
    H, W = dst.shape
    dst[:] = 0
    j0, j1 = max(0, -l), min(W, Wp - l)
    for i in range(max(0, -t), min(H, Hp - t)):
        r = i + t
        for pw in range(SW):
            js = j0 + (pw - (j0 + l)) % SW
            if js >= j1:
                continue
            n = (j1 - js - 1) // SW + 1
            q = (r // SH) * Wq + (js + l) // SW
            if SW == 1:
                dst[i, js : js + n] = buf[r % SH, q : q + n]
            else:
                dst[i, js : js + (n - 1) * SW + 1 : SW] = buf[(r % SH) * SW + pw, q : q + n]


@jit
def _forward_nb(x, w, y, SH, SW, t, l, DH, DW, Hp, Wp, chunks):
    N, C, H, W = x.shape
    O, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    M = O // C
    Hq, Wq = -(-Hp // SH), -(-Wp // SW)
    L, size = OH * Wq, Hq * Wq + ((KW - 1) * DW) // SW
    for chunk in prange(chunks):  # (n, c) planes in ``chunks`` runs; buffers made once per run
        xb = np.zeros((SH * SW, size), dtype=x.dtype)  # its padding stays zero from plane to plane
        acc = np.empty(L, dtype=y.dtype)
        for job in range(chunk * N * C // chunks, (chunk + 1) * N * C // chunks):
            n, c = job // C, job % C
            _split_phases(x[n, c], xb, t, l, SH, SW, Hp, Wp, Wq)
            for m in range(M):
                o = c * M + m
                acc[:] = 0
                for kh in range(KH):
                    for kw in range(KW):
                        p = ((kh * DH) % SH) * SW + (kw * DW) % SW
                        s = ((kh * DH) // SH) * Wq + (kw * DW) // SW
                        _axpy(acc, w[o, kh, kw], xb[p, s : s + L])
                for oh in range(OH):
                    for ow in range(OW):
                        y[n, o, oh, ow] = acc[oh * Wq + ow]


@jit
def _backward_nb(x, gy, w, gx, gw, need_gx, need_gw, SH, SW, t, l, DH, DW, Hp, Wp):
    """Both gradients in one pass over gy (and x): one task per input channel c. An array
    that is not needed is passed empty (gx keeps its channel count), so shapes come from gy.
    The input gradient is the forward's taps run backwards: each adds w * gy into the shifted
    phase view of a padded-gradient buffer (the scatter is race-free: a task owns its planes)."""
    N, C = gy.shape[0], gx.shape[1]
    O, KH, KW = w.shape
    OH, OW = gy.shape[2], gy.shape[3]
    M = O // C
    Hq, Wq = -(-Hp // SH), -(-Wp // SW)
    L, size = OH * Wq, Hq * Wq + ((KW - 1) * DW) // SW
    for c in prange(C):
        xb = np.zeros((SH * SW, size), dtype=gy.dtype)  # phases of the padded x plane
        gb = np.zeros((SH * SW, size), dtype=gy.dtype)  # phases of the padded gradient
        ge = np.zeros(L, dtype=gy.dtype)  # gy on the (OH, Wq) grid, zero in the extra columns
        # Weight gradient: elementwise running sums per (m, tap, lane) -- SIMD without
        # reassociating a scalar sum, small enough for L1 -- added up in float64 at the end.
        acc = np.zeros((M if need_gw else 0, KH * KW, LANES), dtype=gy.dtype)
        for n in range(N):
            if need_gw:
                _split_phases(x[n, c], xb, t, l, SH, SW, Hp, Wp, Wq)
            if need_gx:
                gb[:] = 0
            for m in range(M):
                o = c * M + m
                for oh in range(OH):
                    ge[oh * Wq : oh * Wq + OW] = gy[n, o, oh]
                if need_gx:
                    for kh in range(KH):
                        for kw in range(KW):
                            p = ((kh * DH) % SH) * SW + (kw * DW) % SW
                            s = ((kh * DH) // SH) * Wq + (kw * DW) // SW
                            _axpy(gb[p, s : s + L], w[o, kh, kw], ge)
                if need_gw:  # chunk by chunk, so a chunk of gy is reused from L1 by every tap
                    for j0 in range(0, L, LANES):
                        j1 = min(L, j0 + LANES)
                        for kh in range(KH):
                            for kw in range(KW):
                                p = ((kh * DH) % SH) * SW + (kw * DW) % SW
                                s = ((kh * DH) // SH) * Wq + (kw * DW) // SW + j0
                                _mul_acc(acc[m, kh * KW + kw, : j1 - j0], ge[j0:j1], xb[p, s : s + j1 - j0])
            if need_gx:
                _merge_phases(gb, gx[n, c], t, l, SH, SW, Hp, Wp, Wq)
        if need_gw:
            for m in range(M):
                for k in range(KH * KW):
                    total = 0.0
                    for j in range(LANES):
                        total += acc[m, k, j]
                    gw[c * M + m, k // KW, k % KW] = total


def _use_numba(a, b):
    """The compiled kernels take NumPy float arrays of one dtype; anything else -> NumPy."""
    return enabled() and usable(a, b) and a.dtype == b.dtype


def _chunks(jobs):
    """Runs of work for the parallel loop: a few per thread (load balance), each with its own
    buffers (allocated once per run rather than once per plane)."""
    return max(1, min(jobs, 4 * (get_threads() or 1)))


def _forward_nb_call(x, w, y, stride, padding, dilation):
    (SH, SW), ((t, b), (l, r)), (DH, DW) = stride, padding, dilation
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w.reshape(w.shape[0], *w.shape[2:]))
    chunks = _chunks(x.shape[0] * x.shape[1])
    _forward_nb.compiled(x, w, y, SH, SW, t, l, DH, DW, x.shape[2] + t + b, x.shape[3] + l + r, chunks)
    return y


def _backward_nb_call(x, gy, w, x_shape, stride, padding, dilation, need_gx, need_gw):
    (SH, SW), ((t, b), (l, r)), (DH, DW) = stride, padding, dilation
    N, C, H, W = x_shape
    O, _, KH, KW = w.shape
    gy, w3 = np.ascontiguousarray(gy), np.ascontiguousarray(w.reshape(O, KH, KW))
    x = np.ascontiguousarray(x) if need_gw else np.empty((0, 0, 0, 0), gy.dtype)
    gx = np.empty(x_shape, dtype=gy.dtype) if need_gx else np.empty((0, C, 0, 0), gy.dtype)
    gw = np.empty((O, KH, KW), dtype=gy.dtype)
    _backward_nb.compiled(x, gy, w3, gx, gw, need_gx, need_gw, SH, SW, t, l, DH, DW, H + t + b, W + l + r)
    return (gx if need_gx else None), (gw.reshape(O, 1, KH, KW) if need_gw else None)


# ----- public -------------------------------------------------------------------------------
def depthwise_forward(x, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1)):
    """Depthwise convolution y (N, C*M, OH, OW) of x (N, C, H, W) by w (C*M, 1, KH, KW).

    Equal to ``conv_gemm.forward(x, w, stride, padding, dilation, groups=C)``. No bias.

    >>> import numpy as np
    >>> depthwise_forward(np.ones((1, 2, 4, 4)), np.ones((4, 1, 3, 3)), padding=((1, 1), (1, 1)))[0, :, 0, 0]
    array([4., 4., 4., 4.])
    """
    stride, padding, dilation = _norm(stride, padding, dilation)
    N, C, H, W, M, KH, KW, OH, OW = _geometry(x.shape, w.shape, stride, padding, dilation)
    if not _use_numba(x, w):
        return _forward_numpy(x, w, stride, padding, dilation)
    return _forward_nb_call(x, w, np.empty((N, C * M, OH, OW), x.dtype), stride, padding, dilation)


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
