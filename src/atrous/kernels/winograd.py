"""Winograd minimal filtering (Lavin & Gray, 2016) for 3x3 stride-1 convolutions.

F(m x m, 3x3) computes an m x m output tile from an a x a input tile (a = m + 2) with a*a
multiplications instead of 9*m*m::

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A      (.) elementwise, g the 3x3 filter, d the tile

Summed over input channels, the elementwise product becomes one GEMM per tap (xi, nu) of the
a x a transformed tile: ``M[xi,nu] (O, T) = U[xi,nu] (O, C) @ V[xi,nu] (C, T)`` over all T tiles
of a chunk of images. F(2x2, 3x3) (``m=2``: 16 GEMMs, 2.25x fewer multiplications than direct)
and F(4x4, 3x3) (``m=4``: 36 GEMMs, 4x fewer, larger rounding error: its transforms hold
constants up to 8 and 1/24) are provided.

Shapes::

    x: (N, C, H, W)   w: (O, C, 3, 3)   y, gy: (N, O, OH, OW)
    padding ((top, bottom), (left, right)), negative amounts crop; stride 1, dilation 1, groups 1
    tiles: TH = ceil(OH / m), TW = ceil(OW / m), T = nb*TH*TW for a chunk of nb images
    V: (a, a, C, nb, TH, TW)   U: (a*a, O, C)   M: (a*a, O, T)

The transforms are separable: rows first, then columns, each a short sum of strided slices of
the whole (padded) image -- tile th reads padded rows th*m .. th*m + a - 1, so input row i of
every tile is the slice ``[i : i + m*TH : m]``. That is a few vectorised passes per transform
and no tile copies; the GEMMs read contiguous (C, T) and (O, C) operands.

Backward (same module): the input gradient is this forward applied to gy with the spatially
flipped, in/out-swapped kernel (a 3x3 stride-1 convolution again); the weight gradient is the
adjoint of the forward in the Winograd domain: ``dU[xi,nu] = dM[xi,nu] @ V[xi,nu]^T`` with
``dM = A gy A^T`` per output tile, then ``gw = G^T dU G``.

With numba (``atrous[fast]``) every transform -- input (``_input_transform_nb``), output
(``_output_transform_nb``) and the weight gradient's ``A gy A^T`` (``_grad_transform_nb``) -- is
one parallel pass over the (image, channel) planes that works a tile at a time in scalars, with
the 1-D transforms written out; the Winograd-domain matrices are then (a*a, C, T) with each
tap's (C, T) contiguous. The NumPy passes above stay the reference and run whenever numba is
missing or disabled.

Batches are processed in chunks of images whose working memory fits
``atrous.config.workspace_bytes`` and the cache-sized ``CHUNK_BYTES`` of the GEMM engine.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import conv_gemm
from ._numba import enabled, jit, prange, usable
from .im2col import output_size, pad2d

# Transform matrices: rows of B^T (a x a), G (a x 3), A^T (m x a). Exact in binary except
# F(4x4)'s 1/6, 1/12 and 1/24 in G.
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}
TILES = tuple(_MATRICES)


def matrices(m, dtype=np.float64):
    """(B^T, G, A^T) of F(m x m, 3x3) as arrays of ``dtype``."""
    if m not in _MATRICES:
        raise ValueError(f"winograd: output tile m must be one of {TILES}, got {m!r}")
    return tuple(np.asarray(M, dtype=np.float64).astype(dtype) for M in _MATRICES[m])


def supports(w_shape, stride=(1, 1), dilation=(1, 1), groups=1):
    """True when a convolution with these parameters is a 3x3 stride-1 one Winograd computes."""
    return tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1


def _combine(xp, coefs, terms, out):
    """out = sum_k coefs[k] * terms[k] in few passes (zero coefficients skipped, +-1 as add/sub)."""
    pairs = [(float(c), t) for c, t in zip(coefs, terms) if c != 0]
    (c0, t0), rest = pairs[0], pairs[1:]
    if rest and c0 in (1.0, -1.0) and rest[0][0] in (1.0, -1.0):
        (c1, t1), rest = rest[0], rest[1:]
        if c0 == c1:
            xp.add(t0, t1, out=out)
            if c0 < 0:
                xp.negative(out, out=out)
        elif c0 > 0:
            xp.subtract(t0, t1, out=out)
        else:
            xp.subtract(t1, t0, out=out)
    elif c0 == 1.0:
        out[...] = t0
    else:
        xp.multiply(t0, c0, out=out)
    for c, t in rest:
        if c == 1.0:
            xp.add(out, t, out=out)
        elif c == -1.0:
            xp.subtract(out, t, out=out)
        else:
            xp.add(out, t * c, out=out)
    return out


def _tiles(out_hw, m):
    return -(-out_hw[0] // m), -(-out_hw[1] // m)


def _chunk(N, per_image, itemsize):
    return conv_gemm.chunk_size(N, 1, per_image, itemsize)


def _input_transform(xp, BT, src, m, TH, TW, R, V):
    """V[xi, nu] (C, nb, TH, TW) = (B^T d B)[xi, nu] of every tile d of the padded ``src``.

    src: (nb, C, m*TH + 2, m*TW + 2); R: row-pass buffer (a, nb, C, TH, Wp)."""
    a = BT.shape[0]
    rows = [src[:, :, i : i + m * (TH - 1) + 1 : m, :] for i in range(a)]
    for xi in range(a):
        _combine(xp, BT[xi], rows, R[xi])
    for xi in range(a):
        cols = [R[xi][..., j : j + m * (TW - 1) + 1 : m] for j in range(a)]
        for nu in range(a):
            _combine(xp, BT[nu], cols, V[xi, nu].transpose(1, 0, 2, 3))


def filter_transform(w, m):
    """U = G g G^T of every (o, c) filter: (O, C, 3, 3) -> (a*a, O, C), contiguous."""
    xp = get_array_module(w)
    _, G, _ = matrices(m, w.dtype)
    G = xp.asarray(G)
    O, C = w.shape[:2]
    a = G.shape[0]
    # U[(xi, nu), (o, c)] = sum_{(k, l)} (G kron G)[(xi, nu), (k, l)] w[(o, c), (k, l)]: one
    # GEMM against the transposed weight view, written in the (a*a, O*C) layout the taps need.
    K = xp.kron(G, G)  # (a*a, 9)
    return xp.matmul(K, xp.ascontiguousarray(w).reshape(O * C, 9).T).reshape(a * a, O, C)


def _padded_input(x, padding, out_hw, m):
    """The input with its padding and the extra bottom/right zeros that complete the last tiles:
    returns (x cropped by any negative padding, ((top, bottom), (left, right)) non-negative)."""
    OH, OW = out_hw
    TH, TW = _tiles(out_hw, m)
    (t, b), (l, r) = padding
    b, r = b + TH * m - OH, r + TW * m - OW
    x = pad2d(x, ((min(t, 0), min(b, 0)), (min(l, 0), min(r, 0))))  # crops only (a view)
    return x, ((max(t, 0), max(b, 0)), (max(l, 0), max(r, 0)))


def _transformed_chunks(x, padding, out_hw, m, extra_per_image=0):
    """Yield (n0, n1, V) over the batch: V (a, a, C, nb, TH, TW), the transformed tiles of
    images n0..n1, in a buffer reused by every chunk."""
    xp = get_array_module(x)
    BT, _, _ = matrices(m, x.dtype)
    a = BT.shape[0]
    N, C = x.shape[:2]
    TH, TW = _tiles(out_hw, m)
    x, ((t, b), (l, r)) = _padded_input(x, padding, out_hw, m)
    H, W = x.shape[2:]
    Hp, Wp = H + t + b, W + l + r  # = m*TH + 2, m*TW + 2
    per_image = C * Hp * Wp + a * C * TH * Wp + a * a * C * TH * TW + extra_per_image
    chunk = _chunk(N, per_image, x.dtype.itemsize)
    pad = t or b or l or r
    xpad = xp.zeros((chunk, C, Hp, Wp), dtype=x.dtype) if pad else None  # border zeroed once
    R = xp.empty((a, chunk, C, TH, Wp), dtype=x.dtype)
    V = xp.empty((a, a, C, chunk, TH, TW), dtype=x.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        nb = n1 - n0
        src = x[n0:n1]
        if pad:
            xpad[:nb, :, t : t + H, l : l + W] = src
            src = xpad[:nb]
        Vc = V[:, :, :, :nb] if nb < chunk else V
        _input_transform(xp, BT, src, m, TH, TW, R[:, :nb], Vc)
        yield n0, n1, Vc


# ----- compiled transforms (numba, optional) --------------------------------------------------
# One parallel pass per transform over (image, channel) planes, a tile at a time in scalars: the
# 1-D transforms below are B^T, A^T and A written out (each tile's 2-D transform is the 1-D one
# on its columns, then on its rows), so no zero coefficient is multiplied and nothing is a
# temporary array. Tile (n, th, tw) is column (n*TH + th)*TW + tw of the (a*a, C or O, T)
# Winograd-domain matrices; their a*a taps lie _TAP_PAD elements further apart than C*T (or
# O*T), because a stride that is a multiple of 4 KiB sends the a*a values of one tile to the
# same cache set and made these passes several times slower.
_TAP_PAD = 16


@jit(parallel=False)
def _bt2(d0, d1, d2, d3):
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@jit(parallel=False)
def _bt4(d0, d1, d2, d3, d4, d5):
    return (4 * d0 - 5 * d2 + d4, (d3 + d4) - 4 * (d1 + d2), (d4 - d3) + 4 * (d1 - d2),
            (d4 - d2) + 2 * (d3 - d1), (d4 - d2) - 2 * (d3 - d1), 4 * d1 - 5 * d3 + d5)


@jit(parallel=False)
def _at2(m0, m1, m2, m3):
    return m0 + m1 + m2, m1 - m2 - m3


@jit(parallel=False)
def _at4(m0, m1, m2, m3, m4, m5):
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5


@jit(parallel=False)
def _a2(g0, g1):  # A = (A^T)^T: a-vector from an m-vector
    return g0, g0 + g1, g0 - g1, -g1


@jit(parallel=False)
def _a4(g0, g1, g2, g3):
    e, o, e4, o4 = g0 + g2, g1 + g3, g0 + 4 * g2, 2 * g1 + 8 * g3
    return g0, e + o, e - o, e4 + o4, e4 - o4, g3


def _tap_buffer(a, rows, T, dtype):
    """(a*a, rows, T) C-contiguous per tap, taps _TAP_PAD elements apart (see above)."""
    buf = np.empty((a * a, rows * T + _TAP_PAD), dtype=dtype)
    return buf[:, : rows * T].reshape(a * a, rows, T)


@jit
def _input_transform_nb(x, m, t, l, TH, TW, V):
    """V[xi*a + nu, c, (n*TH + th)*TW + tw] = (B^T d B)[xi, nu] of the tile d of plane (n, c) at
    (th, tw); tile pixel (i, j) is x[n, c, th*m + i - t, tw*m + j - l], zero outside x
    (t, l >= 0; x ends within the m*TH + 2 rows, m*TW + 2 columns of the tiles)."""
    N, C, H, W = x.shape
    a = m + 2
    for p in prange(N * C):
        n, c = p // C, p % C
        P = np.zeros((m * TH + 2, m * TW + 2), dtype=x.dtype)  # the padded plane
        P[t : t + H, l : l + W] = x[n, c]
        R = np.empty((a, a))  # B^T d of one tile
        for th in range(TH):
            for tw in range(TW):
                q, r0, c0 = (n * TH + th) * TW + tw, th * m, tw * m
                if m == 2:
                    for j in range(4):
                        R[0, j], R[1, j], R[2, j], R[3, j] = _bt2(
                            P[r0, c0 + j], P[r0 + 1, c0 + j], P[r0 + 2, c0 + j], P[r0 + 3, c0 + j])
                    for xi in range(4):
                        k = 4 * xi
                        V[k, c, q], V[k + 1, c, q], V[k + 2, c, q], V[k + 3, c, q] = _bt2(
                            R[xi, 0], R[xi, 1], R[xi, 2], R[xi, 3])
                else:
                    for j in range(6):
                        R[0, j], R[1, j], R[2, j], R[3, j], R[4, j], R[5, j] = _bt4(
                            P[r0, c0 + j], P[r0 + 1, c0 + j], P[r0 + 2, c0 + j],
                            P[r0 + 3, c0 + j], P[r0 + 4, c0 + j], P[r0 + 5, c0 + j])
                    for xi in range(6):
                        k = 6 * xi
                        V[k, c, q], V[k + 1, c, q], V[k + 2, c, q], V[k + 3, c, q], V[k + 4, c, q], V[k + 5, c, q] = _bt4(
                            R[xi, 0], R[xi, 1], R[xi, 2], R[xi, 3], R[xi, 4], R[xi, 5])


@jit
def _output_transform_nb(M, m, TH, TW, y):
    """y[n, o, th*m + i, tw*m + j] = (A^T M A)[i, j] of tile (n, th, tw), M (a*a, O, N*TH*TW);
    the parts of the last tiles beyond OH, OW are dropped."""
    N, O, OH, OW = y.shape
    a = m + 2
    for p in prange(N * O):
        n, o = p // O, p % O
        Q = np.empty((m, a))  # A^T M of one tile
        Z = np.empty((m, m))
        for th in range(TH):
            for tw in range(TW):
                q = (n * TH + th) * TW + tw
                if m == 2:
                    for nu in range(4):
                        Q[0, nu], Q[1, nu] = _at2(M[nu, o, q], M[4 + nu, o, q], M[8 + nu, o, q], M[12 + nu, o, q])
                    for i in range(2):
                        Z[i, 0], Z[i, 1] = _at2(Q[i, 0], Q[i, 1], Q[i, 2], Q[i, 3])
                else:
                    for nu in range(6):
                        Q[0, nu], Q[1, nu], Q[2, nu], Q[3, nu] = _at4(
                            M[nu, o, q], M[6 + nu, o, q], M[12 + nu, o, q],
                            M[18 + nu, o, q], M[24 + nu, o, q], M[30 + nu, o, q])
                    for i in range(4):
                        Z[i, 0], Z[i, 1], Z[i, 2], Z[i, 3] = _at4(Q[i, 0], Q[i, 1], Q[i, 2], Q[i, 3], Q[i, 4], Q[i, 5])
                for i in range(min(m, OH - th * m)):
                    for j in range(min(m, OW - tw * m)):
                        y[n, o, th * m + i, tw * m + j] = Z[i, j]


@jit
def _grad_transform_nb(gy, m, TH, TW, dM):
    """dM[xi*a + nu, o, (n*TH + th)*TW + tw] = (A g A^T)[xi, nu] of the m x m tile g of gy[n, o]
    at (th, tw), zero beyond the last output row/column. dM: (a*a, O, N*TH*TW)."""
    N, O, OH, OW = gy.shape
    a = m + 2
    for p in prange(N * O):
        n, o = p // O, p % O
        g = np.empty((m, m))
        S = np.empty((a, m))  # A g of one tile
        for th in range(TH):
            for tw in range(TW):
                q = (n * TH + th) * TW + tw
                g[:, :] = 0
                for i in range(min(m, OH - th * m)):
                    for j in range(min(m, OW - tw * m)):
                        g[i, j] = gy[n, o, th * m + i, tw * m + j]
                if m == 2:
                    for j in range(2):
                        S[0, j], S[1, j], S[2, j], S[3, j] = _a2(g[0, j], g[1, j])
                    for xi in range(4):
                        k = 4 * xi
                        dM[k, o, q], dM[k + 1, o, q], dM[k + 2, o, q], dM[k + 3, o, q] = _a2(S[xi, 0], S[xi, 1])
                else:
                    for j in range(4):
                        S[0, j], S[1, j], S[2, j], S[3, j], S[4, j], S[5, j] = _a4(g[0, j], g[1, j], g[2, j], g[3, j])
                    for xi in range(6):
                        k = 6 * xi
                        dM[k, o, q], dM[k + 1, o, q], dM[k + 2, o, q], dM[k + 3, o, q], dM[k + 4, o, q], dM[k + 5, o, q] = _a4(
                            S[xi, 0], S[xi, 1], S[xi, 2], S[xi, 3])


def forward(x, w, padding=((0, 0), (0, 0)), m=2):
    """y = conv2d(x, w) for a 3x3 kernel at stride 1, by F(m x m, 3x3); shapes as the module.

    >>> import numpy as np
    >>> x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    >>> forward(x, w, ((1, 1), (1, 1)))[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    xp = get_array_module(x, w)
    N, C, H, W = x.shape
    O = w.shape[0]
    out_hw = OH, OW = output_size((H, W), (3, 3), (1, 1), padding)
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    if N == 0:
        return y
    if enabled() and usable(x, w) and x.dtype == w.dtype:
        return _forward_compiled(x, w, padding, m, y)
    _, _, AT = matrices(m, x.dtype)
    a = m + 2
    TH, TW = _tiles(out_hw, m)
    U = filter_transform(w, m)
    Mbuf = Q = None
    for n0, n1, V in _transformed_chunks(x, padding, out_hw, m, (a * a + m * a) * O * TH * TW):
        nb = n1 - n0
        T = nb * TH * TW
        if Mbuf is None:
            Mbuf = xp.empty((a * a, O, T), dtype=x.dtype)
            Q = xp.empty((m, a, O, nb, TH, TW), dtype=x.dtype)
        Mc, Qc = Mbuf[..., :T], Q[:, :, :, :nb]
        xp.matmul(U, V.reshape(a * a, C, T), out=Mc)  # the GEMMs: (O, C) @ (C, T) per tap
        Mt = Mc.reshape(a, a, O, nb, TH, TW)
        for i in range(m):  # rows of A^T M A
            for nu in range(a):
                _combine(xp, AT[i], [Mt[xi, nu] for xi in range(a)], Qc[i, nu])
        for i in range(m):  # columns, written straight into y: output row th*m + i, column tw*m + j
            ch = -(-(OH - i) // m)
            for j in range(m):
                cw = -(-(OW - j) // m)
                out = y[n0:n1, :, i::m, j::m].transpose(1, 0, 2, 3)
                _combine(xp, AT[j], [Qc[i, nu][..., :ch, :cw] for nu in range(a)], out)
    return y


def _compiled_chunks(x, padding, out_hw, m, chunk):
    """Yield (n0, n1, V) over the batch in chunks of ``chunk`` images: V (a*a, C, T), the
    transformed tiles of images n0..n1 (T = nb*TH*TW), contiguous, in one reused buffer."""
    N, C = x.shape[:2]
    a = m + 2
    TH, TW = _tiles(out_hw, m)
    x, ((t, _), (l, _)) = _padded_input(x, padding, out_hw, m)  # crops only; pads by bounds
    V = _tap_buffer(a, C, chunk * TH * TW, x.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        Vc = V[..., : (n1 - n0) * TH * TW]
        _input_transform_nb(x[n0:n1], m, t, l, TH, TW, Vc)
        yield n0, n1, Vc


def _forward_compiled(x, w, padding, m, y):
    """forward with the numba transforms: the same GEMMs, each transform one parallel pass."""
    N, C = x.shape[:2]
    O, OH, OW = y.shape[1:]
    a = m + 2
    TH, TW = _tiles((OH, OW), m)
    chunk = _chunk(N, a * a * (C + O) * TH * TW, x.dtype.itemsize)
    U = filter_transform(w, m)
    M = _tap_buffer(a, O, chunk * TH * TW, x.dtype)
    for n0, n1, V in _compiled_chunks(x, padding, (OH, OW), m, chunk):
        Mc = M[..., : V.shape[2]]
        np.matmul(U, V, out=Mc)  # the GEMMs: (O, C) @ (C, T) per tap
        _output_transform_nb(Mc, m, TH, TW, y[n0:n1])
    return y


def _weight_grad_compiled(x, gy, padding, m):
    """dU = sum over chunks of dM @ V^T per tap, both transforms compiled; (a*a, O, C)."""
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    a = m + 2
    TH, TW = _tiles((OH, OW), m)
    chunk = _chunk(N, a * a * (C + O) * TH * TW, x.dtype.itemsize)
    dM = _tap_buffer(a, O, chunk * TH * TW, x.dtype)
    dU = None
    for n0, n1, V in _compiled_chunks(x, padding, (OH, OW), m, chunk):
        dMc = dM[..., : V.shape[2]]
        _grad_transform_nb(gy[n0:n1], m, TH, TW, dMc)
        part = np.matmul(dMc, V.transpose(0, 2, 1))  # (O, T) @ (T, C) per tap
        if dU is None:
            dU = part
        else:
            dU += part
    return dU


def input_grad(gy, w, input_hw, padding=((0, 0), (0, 0)), m=2):
    """dL/dx (N, C, H, W) of y = conv2d(x, w, padding) (3x3, stride 1): the Winograd forward
    of gy with the flipped, channel-swapped kernel; gx[h] = sum_kh gy[h + top - kh] w[kh]."""
    pad = conv_gemm.input_grad_padding((3, 3), input_hw, gy.shape[2:], padding)
    return forward(gy, conv_gemm.flip_weight(w, 1), pad, m)


def weight_grad(x, gy, padding=((0, 0), (0, 0)), m=2):
    """dL/dw (O, C, 3, 3) of y = conv2d(x, w, padding) (3x3, stride 1), in the Winograd domain."""
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    if N == 0:
        return xp.zeros((O, C, 3, 3), dtype=x.dtype)
    _, G, AT = matrices(m, x.dtype)
    a = m + 2
    if enabled() and usable(x, gy) and x.dtype == gy.dtype:
        return _gw_from_dU(xp, _weight_grad_compiled(x, gy, padding, m), G, a, O, C)
    TH, TW = _tiles((OH, OW), m)
    gyp = dM = S = None
    dU = None
    extra = O * TH * TW * (m * m + a * m + a * a)
    for n0, n1, V in _transformed_chunks(x, padding, (OH, OW), m, extra):
        nb = n1 - n0
        T = nb * TH * TW
        if gyp is None:  # gy tiles, zero beyond the last output row/column
            gyp = xp.zeros((nb, O, TH * m, TW * m), dtype=x.dtype)
            S = xp.empty((a, nb, O, TH, TW * m), dtype=x.dtype)
            dM = xp.empty((a, a, O, nb, TH, TW), dtype=x.dtype)
        g, Sc, dMc = gyp[:nb], S[:, :nb], dM[:, :, :, :nb]
        g[:, :, :OH, :OW] = gy[n0:n1]
        rows = [g[:, :, i::m, :] for i in range(m)]
        for xi in range(a):  # dM = A gy A^T: rows, then columns (A^T's columns as coefficients)
            _combine(xp, AT[:, xi], rows, Sc[xi])
        for xi in range(a):
            cols = [Sc[xi][..., j::m] for j in range(m)]
            for nu in range(a):
                _combine(xp, AT[:, nu], cols, dMc[xi, nu].transpose(1, 0, 2, 3))
        part = xp.matmul(dMc.reshape(a * a, O, T), V.reshape(a * a, C, T).transpose(0, 2, 1))
        if dU is None:
            dU = part
        else:
            dU += part
    return _gw_from_dU(xp, dU, G, a, O, C)


def _gw_from_dU(xp, dU, G, a, O, C):
    """gw (O, C, 3, 3) = G^T dU G per (o, c), from dU (a*a, O, C)."""
    dU = dU.reshape(a, a, O, C)
    G = xp.asarray(G)
    # gw[o, c, k, l] = sum_{xi, nu} G[xi, k] dU[xi, nu, o, c] G[nu, l]
    gw = xp.tensordot(G.T, xp.tensordot(G.T, dU, axes=(1, 1)), axes=(1, 1))  # (k, l, O, C)
    return xp.ascontiguousarray(gw.transpose(2, 3, 0, 1))


__all__ = ["forward", "input_grad", "weight_grad", "filter_transform", "matrices", "supports", "TILES"]
