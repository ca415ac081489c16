"""The general 2-D convolution by im2col + GEMM, and its two gradients.

One kernel serves every flavour: stride, dilation (a trous), groups (depthwise is
groups == channels), and asymmetric ``((top, bottom), (left, right))`` padding, where a
negative amount crops (so TF/ONNX SAME and transposed convolutions need nothing special).

Shapes::

    x:  (N, C, H, W)        w: (O, C/G, KH, KW)        y, gy: (N, O, OH, OW),  P = OH*OW
    OH = (H + top + bottom - DH*(KH-1) - 1) // SH + 1, likewise OW

Forward: per group g, ``y_g = W_g (O/G, C/G*KH*KW) @ cols_g (C/G*KH*KW, B*P)``, where a
column matrix holds a *block* of B images side by side. B = 1 when images are large, and the
GEMM writes NCHW output in place; for small images B grows (a divisor of N, up to about
``GEMM_COLUMNS`` columns) so BLAS gets a wide enough matrix. Gradients are the same kernel
with roles swapped:

  * ``weight_grad``: ``gW_g = gy_g (O/G, B*P) @ cols_g^T`` (a transposed view, no copy),
    summed over blocks in order.
  * ``input_grad`` (also conv_transpose2d): at stride 1 it is the forward convolution of gy
    with the spatially flipped, in/out-swapped weight (one im2col copy, cheaper than KH*KW
    read-modify-write passes); at larger strides ``cols = W^T @ gy`` and col2im.

Blocks and chunks: the block size B depends only on the shapes, so every GEMM and every sum
sees the same operands in the same order however the batch is chunked. The batch is then
processed in chunks of whole blocks, im2col writing each chunk into one reused buffer. A
chunk's working memory -- columns, GEMM result and padded input, per image
``(C*KH*KW + O)*P + C*Hp*Wp`` elements -- is kept under ``atrous.config.workspace_bytes``
(the bounded workspace; at least one block) and under ``CHUNK_BYTES``, so the columns are
still in cache when the GEMM reads them. Chunked results are bitwise identical to unchunked.
The bound is per block: one image whose columns alone exceed the limit is still done whole.
A 1x1 convolution without padding needs no columns: the (strided) input is its own matrix,
per image for NCHW memory, or whole as (pixels, C) when its channels are innermost
(``kernels.pointwise``).
"""
from __future__ import annotations

from ..backend import config, get_array_module
from . import pointwise
from .im2col import col2im, im2col_chunks, output_size

_ZERO = ((0, 0), (0, 0))
GEMM_COLUMNS = 2048  # images are blocked until a GEMM has about this many columns
CHUNK_BYTES = 16 << 20  # working set of one chunk: small enough to stay in the last-level cache


def block_size(N, P):
    """Largest divisor B of N with B*P <= GEMM_COLUMNS (at least 1)."""
    best = 1
    for b in range(2, N + 1):
        if N % b == 0 and b * P <= GEMM_COLUMNS:
            best = b
    return best


def chunk_size(N, block, per_image_elements, itemsize):
    """Images per chunk: whole blocks whose working memory fits the smaller of
    config.workspace_bytes and CHUNK_BYTES (at least one block)."""
    limit = min(int(config.workspace_bytes), CHUNK_BYTES)
    fit = limit // max(1, per_image_elements * itemsize)
    return max(block, min(N, fit) // block * block)


def _plan(x_shape, kernel, out_channels, out_hw, padding, itemsize):
    """(block, chunk) for a convolution: see the module docstring."""
    N, C, H, W = x_shape
    (KH, KW), P = kernel, out_hw[0] * out_hw[1]
    (t, b), (l, r) = padding
    # per image: columns, GEMM result, padded input
    per_image = (C * KH * KW + out_channels) * P + C * (H + t + b) * (W + l + r)
    B = block_size(N, P)
    return B, chunk_size(N, B, per_image, itemsize)


def _pointwise(kernel, padding):
    return tuple(kernel) == (1, 1) and tuple(map(tuple, padding)) == _ZERO


def _subsample(x, out_hw, stride):
    """Inputs of an unpadded 1x1 convolution: every SH-th row and SW-th column, contiguous."""
    (OH, OW), (SH, SW) = out_hw, stride
    xs = x[:, :, : SH * (OH - 1) + 1 : SH, : SW * (OW - 1) + 1 : SW]
    return get_array_module(x).ascontiguousarray(xs)


def _blocks(a, G, block):
    """(nb, G*M, OH, OW) -> (nb/B, G, M, B*P): images of a block side by side (a copy if B > 1)."""
    nb, GM = a.shape[:2]
    a = a.reshape(nb // block, block, G, GM // G, -1)
    if block > 1:
        a = get_array_module(a).ascontiguousarray(a.transpose(0, 2, 3, 1, 4))
    return a.reshape(nb // block, G, GM // G, -1)


def forward(x, w, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1, algorithm="auto"):
    """y = conv(x, w); see the module docstring for shapes. No bias (the caller adds it).

    ``algorithm='gemm'`` runs this engine; 'auto' lets ``kernels.algorithms`` choose (it may
    pick Winograd or the direct depthwise kernel, and honours ``atrous.config.conv_algorithm``).
    """
    if algorithm != "gemm":
        from . import algorithms

        return algorithms.run("forward", x, w, None, stride, padding, dilation, groups)
    xp = get_array_module(x, w)
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    G, Og = groups, O // groups
    OH, OW = output_size((H, W), (KH, KW), stride, padding, dilation)
    P = OH * OW
    if N > 0 and pointwise.applies(x, (KH, KW), padding, G):  # channels innermost: one GEMM
        return pointwise.forward(x, w, stride, (OH, OW))
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    if N == 0:
        return y
    if _pointwise((KH, KW), padding):
        # Batched GEMM W_g (O/G, C/G) @ x[n]_g (C/G, P), written into y in place.
        xs = _subsample(x, (OH, OW), stride).reshape(N, G, Cg, P)
        xp.matmul(w.reshape(G, Og, Cg), xs, out=y.reshape(N, G, Og, P))
        return y
    K = Cg * KH * KW
    wg = w.reshape(G, Og, K)
    B, chunk = _plan(x.shape, (KH, KW), O, (OH, OW), padding, x.dtype.itemsize)
    r = xp.empty((chunk // B, G, Og, B * P), dtype=x.dtype) if B > 1 else None
    for n0, n1, cols in im2col_chunks(x, (KH, KW), stride, padding, dilation, B, chunk):
        m = (n1 - n0) // B
        cols = cols.reshape(m, G, K, B * P)
        if B == 1:
            xp.matmul(wg, cols, out=y[n0:n1].reshape(m, G, Og, P))
        else:  # (m, O, B, P) -> (m, B, O, P)
            xp.matmul(wg, cols, out=r[:m])
            y[n0:n1].reshape(m, B, O, OH, OW)[...] = r[:m].reshape(m, O, B, OH, OW).transpose(0, 2, 1, 3, 4)
    return y


def weight_grad(x, gy, kernel, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1, algorithm="auto"):
    """dL/dw (O, C/G, KH, KW) of y = conv(x, w), given x and gy = dL/dy. ``algorithm``: as forward."""
    if algorithm != "gemm":
        from . import algorithms

        return algorithms.run("weight_grad", x, gy, tuple(kernel), stride, padding, dilation, groups)
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    O, OH, OW = gy.shape[1:]
    KH, KW = kernel
    G, P = groups, OH * OW
    Cg, Og = C // G, O // G
    K = Cg * KH * KW
    if N == 0:
        return xp.zeros((O, Cg, KH, KW), dtype=x.dtype)
    if pointwise.applies(x, kernel, padding, G):
        return pointwise.weight_grad(x, gy, stride)
    if _pointwise(kernel, padding):
        xs = _subsample(x, (OH, OW), stride).reshape(N, G, Cg, P)
        per_chunk = [xp.matmul(gy.reshape(N, G, Og, P), xs.transpose(0, 1, 3, 2))]
    else:
        B, chunk = _plan(x.shape, kernel, O, (OH, OW), padding, x.dtype.itemsize)
        per_chunk = (
            xp.matmul(_blocks(gy[n0:n1], G, B), cols.reshape(-1, G, K, B * P).transpose(0, 1, 3, 2))
            for n0, n1, cols in im2col_chunks(x, kernel, stride, padding, dilation, B, chunk)
        )
    gw = None
    for parts in per_chunk:
        for part in parts:  # (G, O/G, C/G*KH*KW) per block, summed in batch order
            if gw is None:
                gw = part.copy()
            else:
                gw += part
    return gw.reshape(O, Cg, KH, KW)


def flip_weight(w, groups):
    """(O, C/G, KH, KW) -> (C, O/G, KH, KW): in/out channels swapped per group, taps reversed.

    Convolving gy with this weight at stride 1 gives the input gradient of convolving with w.
    """
    O, Cg, KH, KW = w.shape
    G = groups
    wf = w.reshape(G, O // G, Cg, KH, KW)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    return get_array_module(w).ascontiguousarray(wf).reshape(G * Cg, O // G, KH, KW)


def input_grad_padding(kernel, input_hw, out_hw, padding, dilation=(1, 1)):
    """Padding of gy under which the stride-1 forward convolution of gy with ``flip_weight(w)``
    is the input gradient of y = conv(x, w): gx[h] = sum_kh gy[h + top - kh*DH] w[kh], so gy is
    padded on top by DH*(KH-1) - top, and at the bottom so that exactly H rows come out. Every
    algorithm's stride-1 input gradient is computed this way."""
    (KH, KW), (H, W), (OH, OW) = kernel, input_hw, out_hw
    (t, _), (l, _) = padding
    eh, ew = dilation[0] * (KH - 1), dilation[1] * (KW - 1)
    return (eh - t, H - OH + t), (ew - l, W - OW + l)


def input_grad_by_forward(forward_fn, gy, w, input_hw, padding, dilation=(1, 1), groups=1):
    """The stride-1 input gradient of y = conv(x, w) computed by an engine's own forward:
    ``forward_fn(gy, flip_weight(w), (1, 1), input_grad_padding(...), dilation, groups)``."""
    pad = input_grad_padding(w.shape[2:], input_hw, gy.shape[2:], padding, dilation)
    return forward_fn(gy, flip_weight(w, groups), (1, 1), pad, dilation, groups)


def input_grad(gy, w, input_hw, stride=(1, 1), padding=_ZERO, dilation=(1, 1), groups=1, method="auto",
               algorithm="auto"):
    """dL/dx (N, C, H, W) of y = conv(x, w) with x of spatial size ``input_hw``, given gy.

    This is also the transposed convolution of gy by w. ``method``: 'conv' (stride 1 only),
    'col2im', or 'auto' (conv at stride 1, else col2im); both give the same result. An explicit
    ``method`` or ``algorithm='gemm'`` runs this engine; otherwise ``kernels.algorithms`` chooses.
    """
    if algorithm != "gemm" and method == "auto":
        from . import algorithms

        return algorithms.run("input_grad", gy, w, tuple(input_hw), stride, padding, dilation, groups)
    xp = get_array_module(gy, w)
    N, O, OH, OW = gy.shape
    _, Cg, KH, KW = w.shape
    H, W = input_hw
    G = groups
    C = Cg * G
    if method == "auto" and N > 0 and pointwise.applies(gy, (KH, KW), padding, G):
        return pointwise.input_grad(gy, w, (H, W), stride)
    if method == "auto":
        method = "conv" if tuple(stride) == (1, 1) else "col2im"
    if method == "conv":
        if tuple(stride) != (1, 1):
            raise ValueError(f"input_grad: method='conv' needs stride 1, got {tuple(stride)}")
        return input_grad_by_forward(
            lambda *args: forward(*args, algorithm="gemm"), gy, w, (H, W), padding, dilation, G
        )
    if method != "col2im":
        raise ValueError(f"input_grad: method must be 'auto', 'conv' or 'col2im', got {method!r}")
    gx = xp.empty((N, C, H, W), dtype=gy.dtype)
    wt = w.reshape(G, O // G, Cg * KH * KW).transpose(0, 2, 1)  # (G, C/G*KH*KW, O/G)
    B, chunk = _plan((N, C, H, W), (KH, KW), O, (OH, OW), padding, gy.dtype.itemsize)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        cols = xp.matmul(wt, _blocks(gy[n0:n1], G, B))  # (nb/B, G, C/G*KH*KW, B*P)
        gx[n0:n1] = col2im(cols, (n1 - n0, C, H, W), (KH, KW), stride, padding, dilation, block=B)
    return gx


__all__ = ["forward", "weight_grad", "input_grad", "input_grad_padding", "input_grad_by_forward", "flip_weight", "block_size", "GEMM_COLUMNS"]
