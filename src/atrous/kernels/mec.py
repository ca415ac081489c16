"""Memory-efficient convolution (MEC; Cho & Brand, 2017): lower along the width only.

im2col copies every input value KH*KW times. MEC copies it KW times, into a lowered array

    L (N, OW, Hp, KW, C):   L[n, ow, h, kw, c] = xpad[n, h, ow*SW + kw*DW, c]

(xpad: the zero-padded input, channels-last). For a fixed output column ``ow``, the values
under a window are then rows ``oh*SH .. oh*SH + KH - 1`` of ``L[n, ow]``: one contiguous run of
K = KH*KW*C values, already in the (kh, kw, c) order of ``conv_nhwc.weight_cl``. So for each
output row ``oh`` the column matrix of im2col exists inside L as a strided view,

    rows[oh] (n*OW, K):  row (n, ow) starts at L[n, ow, oh*SH], rows ``Hp*KW*C`` values apart,

that BLAS reads in place (its leading dimension is the row step), and

    forward      y_cl[oh] (n*OW, O) = rows[oh] @ w_cl^T                   one GEMM per output row
    weight_grad  gw_cl (K, O)       = sum_oh rows[oh]^T @ gy_cl[oh]
    input_grad   stride 1: the forward of gy with the flipped kernel (as conv_gemm); else conv_gemm

The lowered array is KH times smaller than the column matrix, so it stays in the last-level
cache where columns would not, and the windows' overlap along the height costs no copies. What
it asks of the layout: the KH rows of a window must be adjacent in L, so the vertical dilation
must be 1 (any horizontal dilation works). The GEMMs are as tall as n*OW; this pays where
images are large next to their channel count (CIFAR's 16-32 channel layers), while on
64+ channels the longer GEMMs of plain im2col win (measured in ``algorithms.heuristic``).

The output keeps the GEMMs' memory order: y is an (N, O, OH, OW) array whose memory is laid out
(OH, N, OW, O), channels innermost, as ``torch.channels_last`` keeps NCHW shapes over NHWC
memory. Copying it to NCHW would cost a pass over y for nothing: elementwise ops keep the
layout (``atrous.layout``), the next layer's lowering reads runs of C contiguous values from it,
and its gradient in the same layout is the weight gradient's GEMM operand as it is.

Batches run in chunks of images that fit ``conv_gemm.chunk_size``'s workspace, reusing one padded
buffer and one lowered buffer. The weight gradient adds one GEMM per (block of images, output
row) in a fixed order (rows of a block batched into one matmul, their products then summed),
so chunked results are bitwise identical to unchunked ones.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import conv_gemm
from .conv_nhwc import padded_chunks, weight_cl
from .im2col import output_size

_ZERO = ((0, 0), (0, 0))
# Images per block (and at least per chunk): one output row's GEMM has about GEMM_ROWS rows.
# Its rows lie one lowered image row apart, so the fewer images it spans, the fewer pages it
# touches: on (64, 16, 32, 32) x 16, blocks of 32 images (1024 rows) measured forward 1.97 and
# weight gradient 2.42 ms, against 2.46 and 3.32 with all 64 in one block.
GEMM_ROWS = 1024
PARTS_BYTES = 4 << 20  # the weight gradient's per-row (K, O) products held at once


def supports(x_shape, w_shape, stride, padding, dilation, groups):
    """Groups 1, vertical dilation 1 (the KH rows of a window must be adjacent in L)."""
    return groups == 1 and dilation[0] == 1


def _plan(x_shape, kernel, out_channels, out_hw, padding, itemsize):
    """(block, chunk): images per weight-gradient GEMM, and per chunk of the workspace."""
    N, C, H, W = x_shape
    KW, (OH, OW) = kernel[1], out_hw
    (t, b), (l, r) = ((max(lo, 0), max(hi, 0)) for lo, hi in padding)
    Hp, Wp = H + t + b, W + l + r
    per_image = OW * Hp * KW * C + OH * OW * out_channels + Hp * Wp * C  # L, GEMM result, xpad
    block = max(1, min(N, GEMM_ROWS // max(1, OW)))
    while N % block:
        block -= 1
    return block, conv_gemm.chunk_size(N, block, per_image, itemsize)


def _lowered_chunks(x, kernel, stride, padding, dilation, chunk):
    """Yield (n0, n1, rows) per chunk of ``chunk`` images, rows (OH, (n1-n0)*OW, K) the strided
    view described in the module docstring. The padded input (``conv_nhwc.padded_chunks``) and
    L live in two buffers made once, so the caller must be done with ``rows`` before asking for
    the next chunk."""
    xp = get_array_module(x)
    N, C = x.shape[:2]
    (KH, KW), (SH, SW), (_, DW) = kernel, stride, dilation
    OH, OW = output_size(x.shape[2:], kernel, stride, padding, dilation)
    Hp = x.shape[2] + sum(padding[0])  # the padded (or cropped) height
    low = xp.empty((max(1, min(chunk, N)), OW, Hp, KW, C), dtype=x.dtype)
    lw, lh = low.strides[1:3]
    for n0, n1, xpad in padded_chunks(x, padding, chunk):
        m = n1 - n0
        sn, sh, sw, sc = xpad.strides
        low[:m] = xp.lib.stride_tricks.as_strided(
            xpad, (m, OW, Hp, KW, C), (sn, SW * sw, sh, DW * sw, sc), writeable=False
        )
        # (n, ow) rows are ``lw`` apart: images follow one another (an image is OW * lw).
        rows = xp.lib.stride_tricks.as_strided(
            low[:m], (OH, m * OW, KH * KW * C), (SH * lh, lw, low.itemsize), writeable=False
        )
        yield n0, n1, rows


def forward(x, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """y = conv(x, w) (N, O, OH, OW), no bias; see the module docstring."""
    xp = get_array_module(x, w)
    N = x.shape[0]
    O, C, KH, KW = w.shape
    OH, OW = output_size(x.shape[2:], (KH, KW), stride, padding, dilation)
    r = xp.empty((OH, N * OW, O), dtype=x.dtype)  # y, rows (oh, n, ow) and channels last
    if N > 0:
        wt = weight_cl(w).T  # (K, O), a transposed view: BLAS reads it as is
        _, chunk = _plan(x.shape, (KH, KW), O, (OH, OW), padding, x.dtype.itemsize)
        for n0, n1, rows in _lowered_chunks(x, (KH, KW), stride, padding, dilation, chunk):
            # one GEMM per output row, straight from L into y's memory
            xp.matmul(rows, wt, out=r[:, n0 * OW : n1 * OW])
    return r.reshape(OH, N, OW, O).transpose(1, 3, 0, 2)


def weight_grad(x, gy, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """dL/dw (O, C, KH, KW), given x (N, C, H, W) and gy (N, O, OH, OW)."""
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    KH, KW = kernel
    K = KH * KW * C
    if N == 0:
        return xp.zeros((O, C, KH, KW), dtype=x.dtype)
    block, chunk = _plan(x.shape, kernel, O, (OH, OW), padding, x.dtype.itemsize)
    gw = xp.zeros((K, O), dtype=x.dtype)
    # output rows per batched matmul: their (K, O) products are summed afterwards
    group = max(1, min(OH, PARTS_BYTES // (K * O * x.dtype.itemsize)))
    parts = xp.empty((group, K, O), dtype=x.dtype)
    for n0, n1, rows in _lowered_chunks(x, kernel, stride, padding, dilation, chunk):
        # gy of the chunk as (OH, n*OW, O): row (n, ow) of output row oh, like rows[oh]; a view
        # of a gy in forward's layout, else a copy
        gcl = gy[n0:n1].transpose(2, 0, 3, 1).reshape(OH, -1, O)
        for b0 in range(0, (n1 - n0) * OW, block * OW):  # the same blocks whatever the chunk
            b1 = b0 + block * OW
            for h0 in range(0, OH, group):
                h1 = min(OH, h0 + group)
                out = parts[: h1 - h0]
                xp.matmul(rows[h0:h1, b0:b1].transpose(0, 2, 1), gcl[h0:h1, b0:b1], out=out)
                gw += out.sum(axis=0)
    return xp.ascontiguousarray(gw.reshape(KH, KW, C, O).transpose(3, 2, 0, 1))


def input_grad(gy, w, input_hw, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1):
    """dL/dx (N, C, H, W) given gy: at stride 1 the forward of gy with the flipped kernel."""
    if tuple(stride) != (1, 1):
        return conv_gemm.input_grad(gy, w, input_hw, stride, padding, dilation, groups, algorithm="gemm")
    return conv_gemm.input_grad_by_forward(forward, gy, w, input_hw, padding, dilation)


__all__ = ["supports", "forward", "weight_grad", "input_grad"]
