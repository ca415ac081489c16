"""Fused inference ops: convolution + bias + ReLU with the epilogue done in place.

``conv2d_relu(x, w, b)`` equals ``relu(conv2d(x, w, b))``, but the bias and the ReLU are applied
to the freshly computed GEMM output in place, block by block, so each block is read and written
once while it is still in cache, and no second output-sized array is allocated. In place is safe
here: the convolution's output is a new array nobody else holds, and the ReLU's backward needs
only its own output (``y > 0`` is the same mask as ``conv(x) + b > 0``), never the pre-activation.
So the op is differentiable too, although its purpose is ``model.fuse()`` for inference.

The composed twin ``relu(conv2d(x, w, b))`` is the oracle in the tests.
"""
from __future__ import annotations

from .. import layout
from .._validate import check_same_dtype
from ..autograd import Function
from ..backend import get_array_module
from ..kernels import conv_gemm
from ..tensor import Tensor
from . import conv as _conv

__all__ = ["conv2d_relu"]

EPILOGUE_BYTES = 1 << 20  # one block of output rows: stays in cache between the bias and ReLU passes


def _conv_forward(x, w, stride, padding, dilation, groups):
    """The convolution engine's forward (no bias): a fresh (N, O, OH, OW) array that only this op
    holds, so the epilogue may overwrite it."""
    return conv_gemm.forward(x, w, stride, padding, dilation, groups)


def bias_relu_(y, b=None, relu=True):
    """In place: ``y += b`` per channel, then ``y = max(y, 0)``, one cache-sized block at a time.

    Shape: y (N, O, OH, OW); b (O,) or None. Returns y (a non-contiguous y takes two plain passes).
    Blocks are runs of whole (image, channel) rows of ``y.reshape(N*O, OH*OW)``, and the bias of
    row r is ``b[r % O]``, so a block takes its slice of the bias tiled N times.
    """
    xp = get_array_module(y)
    N, O = y.shape[:2]
    if not y.flags.c_contiguous:  # reshape would copy, and the epilogue would miss y: two passes
        if b is not None:
            layout.add_per_channel_(y, b)  # e.g. channels innermost (atrous.layout)
        if relu:
            xp.maximum(y, 0, out=y)
        return y
    rows = y.reshape(N * O, -1)  # a view: y is contiguous
    bias = None if b is None else xp.tile(b, N)[:, None]  # (N*O, 1)
    step = max(1, EPILOGUE_BYTES // max(1, rows.shape[1] * y.itemsize))
    for r0 in range(0, N * O, step):
        blk = rows[r0 : r0 + step]
        if bias is not None:
            blk += bias[r0 : r0 + step]
        if relu:
            xp.maximum(blk, 0, out=blk)
    return y


class ConvReLU(Function):
    """y = max(conv(x, w) + b, 0) with an in-place epilogue; backward masks g by y > 0, then
    takes the convolution's gradients exactly as ``conv2d``'s backward does."""

    def forward(self, x, w, b, stride, padding, dilation, groups):
        self.args = (stride, padding, dilation, groups)
        self.x, self.w, self.hw = x, w, x.shape[2:]
        y = bias_relu_(_conv_forward(x, w, stride, padding, dilation, groups), b, relu=True)
        self.y = y
        return y

    def backward(self, g):
        need = self.needs_input_grad
        g = g * (self.y > 0)  # torch: zero gradient where the output is exactly 0
        gx = conv_gemm.input_grad(g, self.w, self.hw, *self.args) if need[0] else None
        gw = conv_gemm.weight_grad(self.x, g, self.w.shape[2:], *self.args) if need[1] else None
        gb = g.sum(axis=(0, 2, 3)) if need[2] else None
        return gx, gw, gb


def conv2d_relu(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``relu(conv2d(input, weight, bias, ...))`` in one op: bias and ReLU fused into the
    convolution's output pass (as ``torch.ao.nn.intrinsic.ConvReLU2d`` does for inference).

    Shape: as ``conv2d``: input (N, C, H, W) or (C, H, W); weight (O, C/groups, KH, KW); bias
    (O,) or None; output (N, O, OH, OW), OH = (H + 2*padding - dilation*(KH-1) - 1) // stride + 1.

    >>> import numpy as np
    >>> y = conv2d_relu(np.ones((1, 1, 3, 3), np.float32), -np.ones((2, 1, 1, 1), np.float32),
    ...                 np.array([1.5, 0.5], np.float32))
    >>> y.numpy()[:, :, 0, 0]
    array([[0.5, 0. ]], dtype=float32)
    """
    op = "conv2d_relu"
    x = _conv._array(op, "input", input, (3, 4))
    w = _conv._array(op, "weight", weight, 4)
    check_same_dtype(op, "input", x, "weight", w)
    stride = _conv._ints(op, "stride", stride, 1)
    dilation = _conv._ints(op, "dilation", dilation, 1)
    O, Cg, KH, KW = w.shape
    C = x.shape[-3]
    _conv._check_groups(op, groups, C, O, "out_channels (weight.shape[0])")
    if C != Cg * groups:
        raise ValueError(
            f"{op}: input has {C} channels but weight expects {Cg * groups} "
            f"(weight.shape[1]={Cg} x groups={groups}); input shape {tuple(x.shape)}, "
            f"weight shape {tuple(w.shape)}"
        )
    pad = _conv._padding(op, padding, x.shape[-2:], (KH, KW), stride, dilation)
    _conv._check_output(op, x.shape[-2:], (KH, KW), stride, pad, dilation)
    b = _conv._check_bias(op, bias, O, x.dtype)
    bias = bias if isinstance(bias, Tensor) else b
    weight = weight if isinstance(weight, Tensor) else w
    return _conv._batched(
        input if isinstance(input, Tensor) else x,
        x,
        lambda x4: ConvReLU.apply(x4, weight, bias, stride=stride, padding=pad, dilation=dilation, groups=int(groups)),
    )
