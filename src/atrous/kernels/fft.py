"""Convolution by FFT (overlap-save tiles) for stride-1 convolutions, and its two gradients.

conv2d is a cross-correlation, ``y[i] = sum_k a[i + k] w[k]`` (a the padded input), and a
correlation is a product of spectra with one of them conjugated: ``Y = A . conj(W)``. With an
FFT length L along an axis, the circular correlation equals the linear one for every output
``i <= L - E`` (E the kernel's extent), so an L-point tile of the input gives ``T = L - E + 1``
outputs. The padded input is cut into overlapping L x L tiles at steps of T (overlap-save; one
tile covers the whole image when that is cheapest), and over the channels the products become
one small complex GEMM per frequency f::

    Y[f] (O, M) = conj(W[f]) (O, C) @ X[f] (C, M)      M = tiles of a chunk of images

Shapes::

    x: (N, C, H, W)   w: (O, C/G, KH, KW)   y, gy: (N, O, OH, OW),  stride 1
    padding ((top, bottom), (left, right)); negative amounts crop; any dilation (a dilated
    kernel is a kernel with zeros between its taps, extent E = D*(K-1) + 1); any groups
    (the GEMMs are batched over groups as well)
    tiles: TH = ceil(OH / T_h) by TW = ceil(OW / T_w) per image, F = LH * (LW//2 + 1)
    spectra: X (F, C, M), W (F, O, C/G), Y (F, O, M), complex64 for float32 (complex128 for
    float64)

The tile lengths (``plan``) are chosen among fast FFT lengths (``scipy.fft.next_fast_len``, or
2^a 3^b 5^c) by a cost model of the GEMMs, the FFTs and the copies, with the filter spectra
kept under a quarter of ``atrous.config.workspace_bytes``. Images are processed in chunks whose
working memory (tiles, spectra, their transposes, the inverse transform) fits
``atrous.config.workspace_bytes`` (at least one image per chunk).

Gradients, by the same tiles:

  * ``input_grad``: at stride 1 the full correlation of gy with the spatially flipped,
    in/out-swapped kernel, i.e. ``forward`` of gy padded by E-1-top on top (as ``conv_gemm``).
  * ``weight_grad``: ``gw[k] = sum_i a[i + k] gy[i]`` summed over images is a correlation of the
    input tiles with T x T tiles of gy (zero-padded to L): ``dW[f] (O, C) = conj(GY[f]) (O, M)
    @ X[f]^T (M, C)`` accumulated over chunks, one inverse FFT, and the taps read off at
    ``[0 : E : D]``.

The transforms use ``scipy.fft`` (threaded by ``workers=atrous.get_num_threads()``) for NumPy
arrays where SciPy is installed, else the array namespace's ``fft`` (``numpy.fft``, ``cupy.fft``).

Accuracy, measured (float32 inputs, He-scaled weights, standard normal inputs and output
gradients, N = 2; max |err| / max |float64 reference|, as ``benchmarks/conv_accuracy.py``): on
ten stride-1 layers from 3x3 (64..256 channels, 14..56 pixels) to 15x15 (32..64 channels, 56..112
pixels) the forward, input gradient and weight gradient erred by 2.1e-7 .. 5.0e-7, mostly below
the GEMM path's 3.1e-7 .. 6.6e-7 on the same layers (the FFT's butterflies sum pairwise, and the
error does not grow with the kernel size; it is relative to the largest output, not to each
output). In float64 the error was 0.8e-15 .. 1.1e-15 relative.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..backend import config, get_array_module
from . import conv_gemm
from .im2col import output_size

_ZERO = ((0, 0), (0, 0))

# Cost model, seconds per unit on one core (only the ratios matter): FFT time per point and
# log2(points) of a real 2-D transform (scipy.fft measured 3.5-6 ns per point for L = 16..128),
# and the complex GEMMs' rate, which grows with the columns M per frequency (small (O, C) @
# (C, M) products are bound by reading the filter spectra: measured 24 GFLOP/s at M = 8,
# 50 at M = 128, 110 at M = 648).
_FFT_POINT_LOG = 0.4e-9
_GEMM_PEAK = 110e9
_GEMM_HALF_M = 150


# ----- geometry ------------------------------------------------------------------------------
def supports(x_shape, w_shape, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """True when this module computes the convolution: stride 1 (any kernel, padding, dilation,
    groups)."""
    return tuple(stride) == (1, 1)


def _check(op, stride):
    if tuple(stride) != (1, 1):
        raise ValueError(f"fft.{op}: FFT convolution needs stride (1, 1), got stride={tuple(stride)}; "
                         f"use algorithm 'gemm' for strided convolutions")


def _extent(kernel, dilation):
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


@functools.lru_cache(maxsize=1024)
def fast_length(n):
    """Smallest FFT length >= n with no prime factor above 5 (SciPy's choice where installed)."""
    try:
        from scipy.fft import next_fast_len
    except ImportError:
        return smooth_length(n)
    return next_fast_len(n, real=True)


def smooth_length(n):
    """Smallest 2^a 3^b 5^c >= n (the search ``fast_length`` falls back on without SciPy)."""
    best = 1 << max(0, (n - 1).bit_length())  # a power of two always qualifies
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:  # the smallest p35 * 2^a >= n
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _axis_options(out, extent):
    """(L, T, tiles) along one axis: each fast length L >= extent, its outputs per tile T and the
    tiles to cover ``out`` outputs; a longer L that needs no fewer tiles is dropped."""
    options, seen = [], set()
    for n in range(extent, extent + out):
        L = fast_length(n)
        if L in seen:
            continue
        seen.add(L)
        T = min(L - extent + 1, out)
        tiles = -(-out // T)
        if options and options[-1][2] <= tiles:
            continue
        options.append((L, T, tiles))
    return options


class Plan(tuple):
    """(L, T, tiles, chunk): FFT tile size (LH, LW), outputs per tile (T_h, T_w), tiles per
    image (TH, TW) and images per chunk."""

    L = property(lambda self: self[0])
    T = property(lambda self: self[1])
    tiles = property(lambda self: self[2])
    chunk = property(lambda self: self[3])


def _per_image_bytes(C, O, L, T, tiles, itemsize):
    """Working memory of one image: its tile buffer, the spectra X (C) and Y or GY (O) of its
    tiles, and the inverse transform of its tiles (O)."""
    (LH, LW), M1 = L, tiles[0] * tiles[1]
    F = LH * (LW // 2 + 1)
    Hb, Wb = (tiles[0] - 1) * T[0] + LH, (tiles[1] - 1) * T[1] + LW
    return itemsize * (C * Hb * Wb + 2 * (C + O) * M1 * F + O * M1 * LH * LW)


def plan(out_hw, extent_hw, N, C, O, groups, itemsize):
    """The ``Plan`` of a convolution with ``out_hw`` outputs and a kernel of extent
    ``extent_hw``: the tile sizes minimising the cost model (FFTs of C + O planes per tile, the
    GEMMs at their rate for M = chunk * tiles columns), with the filter spectra
    (O * C/G * F complex) under a quarter of ``atrous.config.workspace_bytes`` (the smallest
    tiles if none fits) and a chunk's working memory under ``atrous.config.workspace_bytes``."""
    return _plan(tuple(out_hw), tuple(extent_hw), N, C, O, groups, itemsize, int(config.workspace_bytes))


@functools.lru_cache(maxsize=1024)
def _plan(out_hw, extent_hw, N, C, O, groups, itemsize, limit):
    Cg = C // groups
    best = None
    for LH, Th, TH in _axis_options(out_hw[0], extent_hw[0]):
        for LW, Tw, TW in _axis_options(out_hw[1], extent_hw[1]):
            L, T, tiles = (LH, LW), (Th, Tw), (TH, TW)
            F, M1 = LH * (LW // 2 + 1), TH * TW
            chunk = max(1, min(N, limit // _per_image_bytes(C, O, L, T, tiles, itemsize)))
            M = chunk * M1
            fft = N * M1 * (C + O) * LH * LW * math.log2(max(LH * LW, 2)) * _FFT_POINT_LOG
            rate = _GEMM_PEAK * math.sqrt(M / (M + _GEMM_HALF_M))
            gemm = 8 * N * M1 * F * O * Cg / rate
            fits = O * Cg * F * 2 * itemsize <= limit / 4
            key = (not fits, fft + gemm if fits else F)
            if best is None or key < best[0]:
                best = (key, Plan((L, T, tiles, chunk)))
    return best[1]


# ----- transforms ----------------------------------------------------------------------------
# Spectra are kept frequency-major, (LH, LW//2 + 1, channels, tiles...), so that the GEMM of
# each frequency reads contiguous (C, M) and (O, C) matrices without a transpose: the FFTs run
# over the two leading axes (scipy.fft's lanes are then the contiguous last axis).
def _fft_functions(xp):
    """(rfft, irfft) over axes (0, 1) with lengths s: scipy.fft, threaded, for NumPy arrays
    where SciPy is installed; otherwise the namespace's own (whose output may be strided)."""
    if xp is np:
        try:
            import scipy.fft as sfft
        except ImportError:
            pass
        else:
            from ..threads import get_num_threads

            workers = get_num_threads()
            return (
                lambda a, s: sfft.rfftn(a, s=s, axes=(0, 1), workers=workers),
                lambda a, s: sfft.irfftn(a, s=s, axes=(0, 1), workers=workers),
            )
    return (lambda a, s: xp.fft.rfftn(a, s=s, axes=(0, 1)), lambda a, s: xp.fft.irfftn(a, s=s, axes=(0, 1)))


def _tile_spectra(xp, rfft, buf, p):
    """X (F, C, M): spectra of the L x L tiles at steps of T of ``buf`` (nb, C, Hb, Wb), columns
    ordered (image, tile row, tile column)."""
    nb, C = buf.shape[:2]
    sN, sC, sH, sW = buf.strides
    (LH, LW), (Th, Tw) = p.L, p.T
    # tile (th, tw) pixel (i, j) = buf[n, c, th*T_h + i, tw*T_w + j], laid out (i, j, c, n, th, tw)
    view = xp.lib.stride_tricks.as_strided(
        buf, (LH, LW, C, nb) + tuple(p.tiles), (sH, sW, sC, sN, Th * sH, Tw * sW), writeable=False
    )
    return rfft(view, p.L).reshape(LH * (LW // 2 + 1), C, -1)


def _filter_spectra(xp, rfft, w, dilation, L, groups):
    """conj(W) (F, G, O/G, C/G) of the (dilated) filters zero-padded to L."""
    O, Cg, KH, KW = w.shape
    EH, EW = _extent((KH, KW), dilation)
    wd = xp.zeros((EH, EW, O, Cg), dtype=w.dtype)
    wd[:: dilation[0], :: dilation[1]] = w.transpose(2, 3, 0, 1)
    S = rfft(wd, tuple(L))  # (LH, LWr, O, C/G)
    return xp.conj(S).reshape(-1, groups, O // groups, Cg)


def _input_buffer(xp, x, padding, n, Hb, Wb):
    """A zeroed (n, C, Hb, Wb) buffer and a function that copies images n0..n1 of x, padded
    (negative padding crops), into it. Rows and columns past Hb, Wb are not needed."""
    N, C, H, W = x.shape
    (t, _), (l, _) = padding
    h0, h1 = max(-t, 0), min(H, Hb - t)  # x rows that land inside the buffer
    w0, w1 = max(-l, 0), min(W, Wb - l)
    buf = xp.zeros((n, C, Hb, Wb), dtype=x.dtype)

    def fill(n0, n1):
        b = buf[: n1 - n0]
        if h1 > h0 and w1 > w0:
            b[:, :, h0 + t : h1 + t, w0 + l : w1 + l] = x[n0:n1, :, h0:h1, w0:w1]
        return b

    return fill


def _buffer_size(p):
    return tuple((p.tiles[i] - 1) * p.T[i] + p.L[i] for i in range(2))


# ----- the three operations ------------------------------------------------------------------
def forward(x, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """y = conv2d(x, w) at stride 1 by FFT; shapes as the module docstring. No bias.

    >>> import numpy as np
    >>> x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    >>> forward(x, w, padding=((1, 1), (1, 1)))[0, 0].round(6)
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    _check("forward", stride)
    xp = get_array_module(x, w)
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    G = groups
    OH, OW = output_size((H, W), (KH, KW), (1, 1), padding, dilation)
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    if N == 0:
        return y
    p = plan((OH, OW), _extent((KH, KW), dilation), N, C, O, G, x.dtype.itemsize)
    (Th, Tw), (TH, TW) = p.T, p.tiles
    F = p.L[0] * (p.L[1] // 2 + 1)
    rfft, irfft = _fft_functions(xp)
    Wf = _filter_spectra(xp, rfft, w, dilation, p.L, G)  # (F, G, O/G, C/G)
    fill = _input_buffer(xp, x, padding, p.chunk, *_buffer_size(p))
    exact = TH * Th == OH and TW * Tw == OW
    for n0 in range(0, N, p.chunk):
        n1 = min(N, n0 + p.chunk)
        nb = n1 - n0
        X = _tile_spectra(xp, rfft, fill(n0, n1), p)  # (F, C, M)
        Y = xp.matmul(Wf, X.reshape(F, G, Cg, -1))  # (F, G, O/G, M): the GEMMs
        Y = Y.reshape((p.L[0], -1, O, nb, TH, TW))
        z = irfft(Y, p.L)[:Th, :Tw]  # (T_h, T_w, O, nb, TH, TW): the valid outputs of each tile
        z = z.transpose(3, 2, 4, 0, 5, 1)  # (nb, O, TH, T_h, TW, T_w): output row th*T_h + i
        if exact:
            y[n0:n1].reshape(z.shape)[...] = z
        else:
            y[n0:n1] = xp.ascontiguousarray(z).reshape(nb, O, TH * Th, TW * Tw)[:, :, :OH, :OW]
    return y


def input_grad(gy, w, input_hw, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """dL/dx (N, C, H, W) of y = conv2d(x, w) at stride 1: the FFT forward of gy with the
    flipped, in/out-swapped kernel; gx[h] = sum_k gy[h + top - k*DH] w[k] (as ``conv_gemm``)."""
    _check("input_grad", stride)
    return conv_gemm.input_grad_by_forward(forward, gy, w, input_hw, padding, dilation, groups)


def weight_grad(x, gy, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """dL/dw (O, C/G, KH, KW) of y = conv2d(x, w) at stride 1, given x and gy = dL/dy.

    gw[o, c, k, l] = sum_{n, i, j} gy[n, o, i, j] a[n, c, i + k*DH, j + l*DW] (a the padded x):
    per frequency conj(GY) (O, M) @ X^T (M, C) over the tiles, then one inverse FFT.
    """
    _check("weight_grad", stride)
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    KH, KW = kernel
    G = groups
    Cg, Og = C // G, O // G
    if N == 0:
        return xp.zeros((O, Cg, KH, KW), dtype=x.dtype)
    E = _extent((KH, KW), dilation)
    p = plan((OH, OW), E, N, C, O, G, x.dtype.itemsize)
    (Th, Tw), (TH, TW) = p.T, p.tiles
    F = p.L[0] * (p.L[1] // 2 + 1)
    rfft, irfft = _fft_functions(xp)
    fill = _input_buffer(xp, x, padding, p.chunk, *_buffer_size(p))
    gbuf = xp.zeros((p.chunk, O, TH * Th, TW * Tw), dtype=gy.dtype)  # gy, zero past its edges
    dW = None
    for n0 in range(0, N, p.chunk):
        n1 = min(N, n0 + p.chunk)
        nb = n1 - n0
        X = _tile_spectra(xp, rfft, fill(n0, n1), p)  # (F, C, M)
        g = gbuf[:nb]
        g[:, :, :OH, :OW] = gy[n0:n1]
        # T_h x T_w tiles of gy laid out (i, j, o, n, th, tw), zero-padded to L by the FFT
        g = g.reshape(nb, O, TH, Th, TW, Tw).transpose(3, 5, 1, 0, 2, 4)
        GY = rfft(g, p.L).reshape(F, G, Og, -1)
        GY = xp.conj(GY, out=GY) if GY.flags.writeable else xp.conj(GY)
        part = xp.matmul(GY, X.reshape(F, G, Cg, -1).transpose(0, 1, 3, 2))  # (F, G, O/G, C/G)
        if dW is None:
            dW = part
        else:
            dW += part
    z = irfft(dW.reshape(p.L[0], -1, O, Cg), p.L)  # (LH, LW, O, C/G): lag (i, j) of the correlation
    gw = z[: E[0] : dilation[0], : E[1] : dilation[1]].transpose(2, 3, 0, 1)
    return xp.ascontiguousarray(gw).astype(x.dtype, copy=False)


__all__ = ["forward", "input_grad", "weight_grad", "supports", "plan", "Plan", "fast_length", "smooth_length"]
