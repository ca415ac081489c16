"""Winograd F(m x m, 3x3) on channels-last tiles: every transform vectorised over channels.

The same arithmetic as ``kernels.winograd`` (Lavin & Gray, 2016; the matrices B^T, G, A^T come
from there), laid out as oneDNN and NNPACK lay it: channels innermost everywhere, so each step
of a transform is one short loop over the contiguous channels of a tile's pixel, which the
compiler turns into SIMD, and the GEMMs are tall and thin::

    xpad: (n, Hp, Wp, C)        the input chunk zero-padded, channels last (one copy of x)
    V:    (a*a, T, C)           V[k, q] = (B^T d B)[xi, nu] of tile q (k = xi*a + nu)
    U:    (a*a, C, O)           the transformed filters
    M:    (a*a, T, O) = V @ U   one GEMM per tap: (T, C) @ (C, O)
    y:    (n, OH, OW, O)        (A^T M A) of every tile, written channels last

with T = n*TH*TW tiles of a chunk, tile q = (image*TH + th)*TW + tw. y is returned as the
NCHW-shaped view of that memory (``atrous.layout``), as ``kernels.conv_nhwc`` returns its GEMM
result, so the batch norm, ReLU and next convolution that follow keep the layout.

Backward: the input gradient is the forward of gy with the flipped, channel-swapped kernel (a
3x3 stride-1 convolution again); the weight gradient is ``dU[k] = dM[k]^T @ V[k]`` with
``dM = A g A^T`` of every m x m tile g of gy (channels last), then ``gw = G^T dU G``.

With numba (``atrous[fast]``) each transform is one parallel pass over the rows of tiles, each
tile's values computed by loops over channels with float constants of the array's dtype (an
integer literal would promote float32 to float64 and stop the vectorisation). Without numba the
NumPy passes below compute the same sums with whole-array slices; they are the reference in the
tests. The tap rows of V, M and dM lie ``winograd._TAP_PAD`` elements further apart than T*C
(or T*O): a stride that is a multiple of 4 KiB sends a tile's a*a values to one cache set.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import conv_gemm, winograd
from ._numba import enabled, jit, prange, usable
from .conv_nhwc import padded_chunks
from .im2col import output_size

TILES = winograd.TILES


def supports(x_shape, w_shape, stride, padding, dilation, groups):
    """True for 3x3 stride-1 convolutions with dilation 1 and groups 1."""
    return winograd.supports(w_shape, stride, dilation, groups)


def _constants(dtype):
    """The transforms' non-unit coefficients (2, 4, 5, 8) as an array of ``dtype``."""
    return np.array([2, 4, 5, 8], dtype=dtype)


# ----- compiled transforms (numba, optional) --------------------------------------------------
@jit(parallel=False, inline="always")
def _bt4(d0, d1, d2, d3, d4, d5, k2, k4, k5):
    return (k4 * d0 - k5 * d2 + d4, (d3 + d4) - k4 * (d1 + d2), (d4 - d3) + k4 * (d1 - d2),
            (d4 - d2) + k2 * (d3 - d1), (d4 - d2) - k2 * (d3 - d1), k4 * d1 - k5 * d3 + d5)


@jit(parallel=False, inline="always")
def _at4(m0, m1, m2, m3, m4, m5, k2, k4, k8):
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + k2 * d34, s12 + k4 * s34, d12 + k8 * d34 + m5


@jit(parallel=False, inline="always")
def _a4(g0, g1, g2, g3, k2, k4, k8):  # A = (A^T)^T: an a-vector from an m-vector
    e, o, e4, o4 = g0 + g2, g1 + g3, g0 + k4 * g2, k2 * g1 + k8 * g3
    return g0, e + o, e - o, e4 + o4, e4 - o4, g3


@jit(parallel=False, inline="always")
def _bt2(d0, d1, d2, d3):
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@jit(parallel=False, inline="always")
def _at2(m0, m1, m2, m3):
    return m0 + m1 + m2, m1 - m2 - m3


@jit(parallel=False, inline="always")
def _a2(g0, g1):
    return g0, g0 + g1, g0 - g1, -g1


@jit
def _input_transform_nb(xpad, m, TH, TW, V, K):
    """V[xi*a + nu, q*C + c] = (B^T d B)[xi, nu] of channel c of tile q; xpad (n, m*TH + 2,
    m*TW + 2, C) C-contiguous, V (a*a, >= n*TH*TW*C) C-contiguous."""
    n_img, _, _, C = xpad.shape
    k2, k4, k5 = K[0], K[1], K[2]
    for p in prange(n_img * TH):
        n, th = p // TH, p % TH
        r0 = th * m
        if m == 2:
            R = np.empty((16, C), xpad.dtype)  # B^T d of one tile, row xi*4 + column j
            for tw in range(TW):
                base, c0 = (p * TW + tw) * C, tw * 2
                for j in range(4):
                    for c in range(C):
                        R[j, c], R[4 + j, c], R[8 + j, c], R[12 + j, c] = _bt2(
                            xpad[n, r0, c0 + j, c], xpad[n, r0 + 1, c0 + j, c],
                            xpad[n, r0 + 2, c0 + j, c], xpad[n, r0 + 3, c0 + j, c])
                for k in range(0, 16, 4):
                    for c in range(C):
                        V[k, base + c], V[k + 1, base + c], V[k + 2, base + c], V[k + 3, base + c] = _bt2(
                            R[k, c], R[k + 1, c], R[k + 2, c], R[k + 3, c])
        else:
            R = np.empty((36, C), xpad.dtype)
            for tw in range(TW):
                base, c0 = (p * TW + tw) * C, tw * 4
                for j in range(6):
                    for c in range(C):
                        R[j, c], R[6 + j, c], R[12 + j, c], R[18 + j, c], R[24 + j, c], R[30 + j, c] = _bt4(
                            xpad[n, r0, c0 + j, c], xpad[n, r0 + 1, c0 + j, c], xpad[n, r0 + 2, c0 + j, c],
                            xpad[n, r0 + 3, c0 + j, c], xpad[n, r0 + 4, c0 + j, c], xpad[n, r0 + 5, c0 + j, c],
                            k2, k4, k5)
                for k in range(0, 36, 6):
                    for c in range(C):
                        (V[k, base + c], V[k + 1, base + c], V[k + 2, base + c], V[k + 3, base + c],
                         V[k + 4, base + c], V[k + 5, base + c]) = _bt4(
                            R[k, c], R[k + 1, c], R[k + 2, c], R[k + 3, c], R[k + 4, c], R[k + 5, c], k2, k4, k5)


@jit
def _output_transform_nb(M, m, TH, TW, y, K):
    """y[n, th*m + i, tw*m + j, o] = (A^T M A)[i, j] of tile (n, th, tw); M (a*a, >= n*TH*TW*O)
    C-contiguous, y (n, OH, OW, O) C-contiguous; the last tiles' parts beyond OH, OW dropped."""
    n_img, OH, OW, O = y.shape
    k2, k4, k8 = K[0], K[1], K[3]
    a = m + 2
    for p in prange(n_img * TH):
        n, th = p // TH, p % TH
        Q = np.empty((m * a, O), M.dtype)  # A^T M of one tile, row i*a + nu
        Z = np.empty((m, O), M.dtype)  # one output row of the tile
        for tw in range(TW):
            base = (p * TW + tw) * O
            for nu in range(a):
                if m == 2:
                    for o in range(O):
                        Q[nu, o], Q[4 + nu, o] = _at2(M[nu, base + o], M[4 + nu, base + o],
                                                       M[8 + nu, base + o], M[12 + nu, base + o])
                else:
                    for o in range(O):
                        Q[nu, o], Q[6 + nu, o], Q[12 + nu, o], Q[18 + nu, o] = _at4(
                            M[nu, base + o], M[6 + nu, base + o], M[12 + nu, base + o],
                            M[18 + nu, base + o], M[24 + nu, base + o], M[30 + nu, base + o], k2, k4, k8)
            for i in range(min(m, OH - th * m)):
                k = i * a
                if m == 2:
                    for o in range(O):
                        Z[0, o], Z[1, o] = _at2(Q[k, o], Q[k + 1, o], Q[k + 2, o], Q[k + 3, o])
                else:
                    for o in range(O):
                        Z[0, o], Z[1, o], Z[2, o], Z[3, o] = _at4(
                            Q[k, o], Q[k + 1, o], Q[k + 2, o], Q[k + 3, o], Q[k + 4, o], Q[k + 5, o], k2, k4, k8)
                for j in range(min(m, OW - tw * m)):
                    for o in range(O):
                        y[n, th * m + i, tw * m + j, o] = Z[j, o]


@jit
def _grad_transform_nb(gpad, m, TH, TW, dM, K):
    """dM[xi*a + nu, q*O + o] = (A g A^T)[xi, nu] of the m x m tile g of channel o of gy;
    gpad (n, m*TH, m*TW, O) C-contiguous (zero beyond the last output row/column)."""
    n_img, _, _, O = gpad.shape
    k2, k4, k8 = K[0], K[1], K[3]
    a = m + 2
    for p in prange(n_img * TH):
        n, th = p // TH, p % TH
        r0 = th * m
        S = np.empty((a * m, O), gpad.dtype)  # A g of one tile, row xi*m + j
        for tw in range(TW):
            base, c0 = (p * TW + tw) * O, tw * m
            for j in range(m):
                if m == 2:
                    for o in range(O):
                        S[j, o], S[2 + j, o], S[4 + j, o], S[6 + j, o] = _a2(
                            gpad[n, r0, c0 + j, o], gpad[n, r0 + 1, c0 + j, o])
                else:
                    for o in range(O):
                        S[j, o], S[4 + j, o], S[8 + j, o], S[12 + j, o], S[16 + j, o], S[20 + j, o] = _a4(
                            gpad[n, r0, c0 + j, o], gpad[n, r0 + 1, c0 + j, o],
                            gpad[n, r0 + 2, c0 + j, o], gpad[n, r0 + 3, c0 + j, o], k2, k4, k8)
            for xi in range(a):
                k, s = xi * a, xi * m
                if m == 2:
                    for o in range(O):
                        dM[k, base + o], dM[k + 1, base + o], dM[k + 2, base + o], dM[k + 3, base + o] = _a2(
                            S[s, o], S[s + 1, o])
                else:
                    for o in range(O):
                        (dM[k, base + o], dM[k + 1, base + o], dM[k + 2, base + o], dM[k + 3, base + o],
                         dM[k + 4, base + o], dM[k + 5, base + o]) = _a4(
                            S[s, o], S[s + 1, o], S[s + 2, o], S[s + 3, o], k2, k4, k8)


# ----- the NumPy transforms (the reference; run without numba) --------------------------------
def _input_transform_np(xpad, m, TH, TW, V):
    """As ``_input_transform_nb``, by whole-array slices: row pass, then column pass."""
    xp = get_array_module(xpad)
    BT, _, _ = winograd.matrices(m, xpad.dtype)
    a, n, C = m + 2, xpad.shape[0], xpad.shape[3]
    rows = [xpad[:, i : i + m * (TH - 1) + 1 : m] for i in range(a)]  # (n, TH, Wp, C) each
    Vt = V[:, : n * TH * TW * C].reshape(a, a, n, TH, TW, C)
    for xi in range(a):
        R = winograd._combine(xp, BT[xi], rows, xp.empty_like(rows[0]))
        cols = [R[:, :, j : j + m * (TW - 1) + 1 : m] for j in range(a)]
        for nu in range(a):
            winograd._combine(xp, BT[nu], cols, Vt[xi, nu])


def _output_transform_np(M, m, TH, TW, y):
    xp = get_array_module(M)
    _, _, AT = winograd.matrices(m, M.dtype)
    a, (n, OH, OW, O) = m + 2, y.shape
    Mt = M[:, : n * TH * TW * O].reshape(a, a, n, TH, TW, O)
    for i in range(m):
        Q = [winograd._combine(xp, AT[i], [Mt[xi, nu] for xi in range(a)], xp.empty_like(Mt[0, 0]))
             for nu in range(a)]
        ch = -(-(OH - i) // m)
        for j in range(m):
            cw = -(-(OW - j) // m)
            winograd._combine(xp, AT[j], [q[:, :ch, :cw] for q in Q], y[:, i::m, j::m])


def _grad_transform_np(gpad, m, TH, TW, dM):
    xp = get_array_module(gpad)
    _, _, AT = winograd.matrices(m, gpad.dtype)
    a, n, O = m + 2, gpad.shape[0], gpad.shape[3]
    rows = [gpad[:, i::m] for i in range(m)]  # (n, TH, m*TW, O) each
    dMt = dM[:, : n * TH * TW * O].reshape(a, a, n, TH, TW, O)
    for xi in range(a):
        S = winograd._combine(xp, AT[:, xi], rows, xp.empty_like(rows[0]))
        cols = [S[:, :, j::m] for j in range(m)]
        for nu in range(a):
            winograd._combine(xp, AT[:, nu], cols, dMt[xi, nu])


def _compiled(*arrays):
    return enabled() and usable(*arrays) and len({a.dtype for a in arrays}) == 1


def _transform(kernel, reference, src, m, TH, TW, dst):
    """Run one transform: the compiled kernel where it can, else the NumPy reference."""
    if _compiled(src, dst):
        kernel(src, m, TH, TW, dst, _constants(src.dtype))
    else:
        reference(src, m, TH, TW, dst)


# ----- the three operations ------------------------------------------------------------------
def _tap_rows(xp, a, rows, dtype):
    """(a*a, rows + pad) C-contiguous: one row of a tile's values per tap (see the docstring)."""
    return xp.empty((a * a, rows + winograd._TAP_PAD), dtype=dtype)


def _plan(x_shape, out_hw, out_channels, m, itemsize):
    """(TH, TW, chunk): tiles per column and row, and images per chunk (whose padded input
    and Winograd-domain matrices fit the workspace, see ``conv_gemm.chunk_size``)."""
    N, C = x_shape[:2]
    TH, TW = winograd._tiles(out_hw, m)
    a = m + 2
    per_image = a * a * (C + out_channels) * TH * TW + C * (m * TH + 2) * (m * TW + 2)
    return TH, TW, conv_gemm.chunk_size(N, 1, per_image, itemsize)


def _transformed_chunks(x, padding, out_hw, out_channels, m):
    """Yield (n0, n1, (TH, TW, T), V) per chunk of images: V (a*a, T, C), the transformed tiles
    of x[n0:n1] (T = (n1-n0)*TH*TW), a view of one buffer reused by every chunk."""
    xp = get_array_module(x)
    C, a = x.shape[1], m + 2
    TH, TW, chunk = _plan(x.shape, out_hw, out_channels, m, x.dtype.itemsize)
    xc, pads = winograd._padded_input(x, padding, out_hw, m)
    V = _tap_rows(xp, a, chunk * TH * TW * C, x.dtype)
    for n0, n1, xpad in padded_chunks(xc, pads, chunk):
        T = (n1 - n0) * TH * TW
        _transform(_input_transform_nb, _input_transform_np, xpad, m, TH, TW, V)
        yield n0, n1, (TH, TW, T), V[:, : T * C].reshape(a * a, T, C)


def forward(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, m=4):
    """y = conv2d(x, w) (N, O, OH, OW), a 3x3 stride-1 kernel, by F(m x m, 3x3) on channels-last
    tiles; y's memory is channels last (``atrous.layout``).

    >>> x, w = np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3))
    >>> y = forward(x, w, padding=((1, 1), (1, 1)))
    >>> y.shape, y.strides[1], y[0, 0, 0].round(6).tolist()  # channels innermost; 3 channels x 4 or 6 taps
    ((2, 4, 5, 5), 8, [12.0, 18.0, 18.0, 18.0, 12.0])
    """
    xp = get_array_module(x, w)
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW = output_size((H, W), (3, 3), (1, 1), padding)
    y = xp.empty((N, OH, OW, O), dtype=x.dtype)
    a = m + 2
    U = winograd.filter_transform(w.astype(x.dtype, copy=False), m).transpose(0, 2, 1)  # (a*a, C, O)
    M = None
    for n0, n1, (TH, TW, T), V in _transformed_chunks(x, padding, (OH, OW), O, m):
        if M is None:
            M = _tap_rows(xp, a, V.shape[1] * O, x.dtype)  # sized by the first (largest) chunk
        xp.matmul(V, U, out=M[:, : T * O].reshape(a * a, T, O))
        _transform(_output_transform_nb, _output_transform_np, M, m, TH, TW, y[n0:n1])
    return y.transpose(0, 3, 1, 2)


def input_grad(gy, w, input_hw, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, m=4):
    """dL/dx (N, C, H, W): this forward of gy with the flipped, channel-swapped kernel."""
    pad = conv_gemm.input_grad_padding((3, 3), input_hw, gy.shape[2:], padding)
    return forward(gy, conv_gemm.flip_weight(w, 1), (1, 1), pad, (1, 1), 1, m)


def weight_grad(x, gy, kernel=(3, 3), stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, m=4):
    """dL/dw (O, C, 3, 3) of y = conv2d(x, w, padding), summed over the batch in the Winograd
    domain: dU[k] (O, C) = dM[k]^T (O, T) @ V[k] (T, C) per chunk, then G^T dU G."""
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    if N == 0:
        return xp.zeros((O, C, 3, 3), dtype=x.dtype)
    a = m + 2
    dM = gpad = dU = None
    for n0, n1, (TH, TW, T), V in _transformed_chunks(x, padding, (OH, OW), O, m):
        nb = n1 - n0
        if dM is None:  # sized by the first (largest) chunk
            dM = _tap_rows(xp, a, T * O, x.dtype)
            gpad = xp.zeros((nb, TH * m, TW * m, O), dtype=x.dtype)  # gy's tiles, zero beyond OH, OW
        gpad[:nb, :OH, :OW] = gy[n0:n1].transpose(0, 2, 3, 1)
        _transform(_grad_transform_nb, _grad_transform_np, gpad[:nb], m, TH, TW, dM)
        part = xp.matmul(dM[:, : T * O].reshape(a * a, T, O).transpose(0, 2, 1), V)
        if dU is None:
            dU = part
        else:
            dU += part
    _, G, _ = winograd.matrices(m, x.dtype)
    return winograd._gw_from_dU(xp, dU, G, a, O, C)


__all__ = ["forward", "input_grad", "weight_grad", "supports", "TILES"]
