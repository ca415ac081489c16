"""Dilated ("à trous") convolution as an ordinary one over the input's phases, as TensorFlow's
``atrous_conv2d`` computes it.

With dilation (DH, DW), output pixel (oh, ow) reads input rows oh + kh*DH - top: all of one
residue class mod DH. Split the image into its DH*DW phases, ``x[:, :, ph::DH, pw::DW]``
(space to batch), and each phase is convolved with the same kernel *undilated*; the results
interleave back into y (batch to space)::

    y[:, :, ph::DH, pw::DW] = conv(x[:, :, ph::DH, pw::DW], w, padding / (DH, DW), dilation 1)

That holds, with every phase the same size and the same padding, when H and W and each padding
amount are multiples of the dilation (the usual 'same' dilated 3x3: padding = dilation). The
phases go through the convolution as one batch of DH*DW*N images, so the fast dilation-1
algorithms (Winograd above all, which cannot dilate) run the whole layer; the copies in and
out are each one pass over x or y, written channels last because those algorithms read and
write that layout. Backward is the same split: the input gradient is the phases' input
gradient, batch to space; the weight gradient of the batched phases is already the sum over
them. Shapes::

    x: (N, C, H, W) -> phases (DH*DW*N, C, H/DH, W/DW), batch index (ph*DW + pw)*N + n
    y: (N, O, OH, OW) <- phases (DH*DW*N, O, OH/DH, OW/DW)
"""
from __future__ import annotations

from ..backend import get_array_module


def supports(x_shape, w_shape, stride, padding, dilation, groups):
    """True when the convolution is dilated, stride 1, and splits into equal phases: H, W and
    every padding amount multiples of the dilation along their axis."""
    if tuple(stride) != (1, 1) or tuple(dilation) == (1, 1):
        return False
    return all(size % d == 0 and lo % d == 0 and hi % d == 0
               for size, d, (lo, hi) in zip(x_shape[2:], dilation, padding))


def to_batch(a, dilation):
    """(N, C, H, W) -> (DH*DW*N, C, H/DH, W/DW), the phases stacked along the batch: one copy,
    channels last (an NCHW-shaped view of NHWC memory, ``atrous.layout``)."""
    xp = get_array_module(a)
    N, C, H, W = a.shape
    DH, DW = dilation
    out = xp.empty((DH, DW, N, H // DH, W // DW, C), dtype=a.dtype)
    out[...] = a.reshape(N, C, H // DH, DH, W // DW, DW).transpose(3, 5, 0, 2, 4, 1)
    return out.reshape(DH * DW * N, H // DH, W // DW, C).transpose(0, 3, 1, 2)


def from_batch(p, dilation):
    """The inverse of ``to_batch``: (DH*DW*N, C, h, w) -> (N, C, h*DH, w*DW), channels last."""
    xp = get_array_module(p)
    B, C, h, w = p.shape
    DH, DW = dilation
    N = B // (DH * DW)
    out = xp.empty((N, h, DH, w, DW, C), dtype=p.dtype)
    out[...] = p.reshape(DH, DW, N, C, h, w).transpose(2, 4, 0, 5, 1, 3)
    return out.reshape(N, h * DH, w * DW, C).transpose(0, 3, 1, 2)


def _phase_padding(padding, dilation):
    return tuple((lo // d, hi // d) for (lo, hi), d in zip(padding, dilation))


def _run(op, a, b, extra, padding, dilation, groups):
    from . import algorithms  # the dilation-1 convolution, by whichever algorithm suits it

    return algorithms.run(op, a, b, extra, (1, 1), _phase_padding(padding, dilation), (1, 1), groups)


def forward(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """y = conv(x, w) with dilation (stride 1), over the phases; y channels last."""
    return from_batch(_run("forward", to_batch(x, dilation), w, None, padding, dilation, groups), dilation)


def input_grad(gy, w, input_hw, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """dL/dx (N, C, H, W): each phase's input gradient, put back in place."""
    hw = tuple(s // d for s, d in zip(input_hw, dilation))
    return from_batch(_run("input_grad", to_batch(gy, dilation), w, hw, padding, dilation, groups), dilation)


def weight_grad(x, gy, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """dL/dw: the weight gradient of the batched phases, which sums over them."""
    return _run("weight_grad", to_batch(x, dilation), to_batch(gy, dilation), tuple(kernel), padding, dilation, groups)


__all__ = ["supports", "to_batch", "from_batch", "forward", "input_grad", "weight_grad"]
