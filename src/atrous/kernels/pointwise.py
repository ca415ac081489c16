"""1x1 convolutions of channels-innermost activations: one GEMM on the (M, C) matrix.

A 1x1 convolution without padding is a matrix product over channels at every pixel. For NCHW
memory ``conv_gemm`` computes it per image as W (O, C) @ x[n] (C, H*W). When x's channels are
innermost (``atrous.layout``: what the channels-last convolutions return), x already is the
matrix (M, C) with a row per pixel, and

    forward      y (M, O)   = x (M, C) @ W^T (C, O)           y keeps x's layout
    weight_grad  gw (O, C)  = gy^T (O, M) @ x (M, C)          gy read in x's row order
    input_grad   gx (M, C)  = gy (M, O) @ W (O, C)            gx keeps gy's layout

one GEMM each, no transposes. A stride S reads every S-th row and column of x (one gather copy
of the subsampled pixels) and, in the input gradient, writes them into a zero gx.
"""
from __future__ import annotations

from ..backend import get_array_module
from ..layout import channel_matrix, channels_last_order, from_channel_matrix

__all__ = ["applies", "forward", "weight_grad", "input_grad"]


def applies(a, kernel, padding, groups):
    """True for an unpadded, ungrouped 1x1 convolution whose input (or, for the input
    gradient, gy) ``a`` has its channels innermost."""
    return (tuple(kernel) == (1, 1) and groups == 1 and all(p == 0 for pair in padding for p in pair)
            and channels_last_order(a) is not None)


def _subsampled(x, stride, out_hw):
    (SH, SW), (OH, OW) = stride, out_hw
    return x[:, :, : SH * (OH - 1) + 1 : SH, : SW * (OW - 1) + 1 : SW]


def forward(x, w, stride, out_hw):
    """y = conv(x, w) (N, O, OH, OW), in x's layout."""
    order = channels_last_order(x)
    O = w.shape[0]
    ym = channel_matrix(_subsampled(x, stride, out_hw), order) @ w.reshape(O, -1).T
    return from_channel_matrix(ym, (x.shape[0], O) + tuple(out_hw), order)


def weight_grad(x, gy, stride):
    """dL/dw (O, C, 1, 1) given x (channels innermost) and gy."""
    order = channels_last_order(x)
    xm = channel_matrix(_subsampled(x, stride, gy.shape[2:]), order)
    gm = channel_matrix(gy, order)  # a copy unless gy has x's layout
    return (gm.T @ xm).reshape(gy.shape[1], x.shape[1], 1, 1)


def input_grad(gy, w, input_hw, stride):
    """dL/dx (N, C, H, W) given gy (channels innermost), in gy's layout."""
    xp = get_array_module(gy, w)
    order = channels_last_order(gy)
    N, O, OH, OW = gy.shape
    C = w.shape[1]
    gxm = channel_matrix(gy, order) @ w.reshape(O, C)
    if tuple(stride) == (1, 1) and tuple(input_hw) == (OH, OW):
        return from_channel_matrix(gxm, (N, C, OH, OW), order)
    shape = (N, C) + tuple(input_hw)
    gx = from_channel_matrix(xp.zeros((N * shape[2] * shape[3], C), gy.dtype), shape, order)
    _subsampled(gx, stride, (OH, OW))[...] = from_channel_matrix(gxm, (N, C, OH, OW), order)
    return gx
