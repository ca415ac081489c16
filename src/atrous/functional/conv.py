"""Convolution family: ``conv2d``, ``conv_transpose2d``, ``unfold``, ``fold``, ``linear``.

All convolutions go through one engine (``atrous.kernels.conv_gemm``): conv2d is its forward,
conv_transpose2d is its input gradient, and each op's backward is built from the other two
(forward, input gradient, weight gradient) with the roles of the operands swapped.
Arguments, defaults and semantics are PyTorch's; inputs are (N, C, H, W) or unbatched (C, H, W).
"""
from __future__ import annotations

import numpy as np

from .. import layout
from .._validate import check_float, check_rank, check_same_dtype
from ..autograd import Function
from ..kernels import algorithms, conv_gemm
from ..kernels.im2col import col2im, im2col
from ..shape import conv_output_size, effective_kernel, pair, same_padding
from ..tensor import Tensor

__all__ = ["conv2d", "conv_transpose2d", "unfold", "fold", "linear"]


# ----- front door -------------------------------------------------------------------------
def _array(op, name, x, ranks=None):
    """The array behind ``x`` (Tensor, ndarray or nested list), checked for rank and dtype."""
    a = x.data if isinstance(x, Tensor) else x
    if not hasattr(a, "ndim"):
        if isinstance(a, (list, tuple)) or np.isscalar(a):
            a = np.asarray(a)
        else:
            raise TypeError(f"{op}: {name} must be an array or Tensor, got {type(x).__name__}")
    if ranks is not None:
        check_rank(op, name, a, ranks)
    check_float(op, name, a)
    return a


def _ints(op, name, value, minimum):
    v = pair(value, name, op)
    if any(i < minimum for i in v):
        raise ValueError(f"{op}: {name} must be >= {minimum} in every dimension, got {value!r}")
    return v


def _padding(op, padding, hw, kernel, stride, dilation):
    """PyTorch's padding argument as ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions (stride={stride})"
                )
            # Total d*(k-1) per axis, the odd pixel at the bottom/right, as PyTorch.
            return tuple(same_padding(hw[i], kernel[i], 1, dilation[i]) for i in range(2))
        raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    p = _ints(op, "padding", padding, 0)
    return ((p[0], p[0]), (p[1], p[1]))


def _check_output(op, in_hw, kernel, stride, padding, dilation):
    out = tuple(conv_output_size(in_hw[i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(2))
    if min(out) < 1:
        raise ValueError(
            f"{op}: computed output size {out} is too small (each must be >= 1); "
            f"out = (in + pad_lo + pad_hi - dilation*(kernel-1) - 1) // stride + 1 with "
            f"input size={tuple(in_hw)}, padding={padding}, kernel_size={tuple(kernel)}, "
            f"dilation={dilation}, stride={stride}"
        )
    return out


def _check_groups(op, groups, channels, out_channels, out_name):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    if channels % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the input's {channels} channels")
    if out_channels % groups:
        raise ValueError(f"{op}: groups={groups} does not divide {out_name}={out_channels}")


def _check_bias(op, bias, out_channels, dtype):
    if bias is None:
        return None
    b = _array(op, "bias", bias, 1)
    if b.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},), got {tuple(b.shape)}")
    if b.dtype != dtype:
        raise TypeError(f"{op}: bias has dtype {b.dtype} but input has dtype {dtype}; cast one of them")
    return b


def _batched(x, a, op_fn):
    """Run ``op_fn`` on a 4-D input; an unbatched (C, H, W) input gains and loses a batch axis."""
    if a.ndim == 4:
        return op_fn(x)
    x4 = x.reshape((1,) + a.shape) if isinstance(x, Tensor) else a[None]
    out = op_fn(x4)
    return out.reshape(out.shape[1:])


def _bias_grad(g):
    # One pass over g in its memory order (an einsum contraction for NCHW measured 2x faster
    # than sum(axis=(0, 2, 3)); a g with channels innermost is summed as a matrix).
    return layout.channel_sums(g)


# ----- conv2d -----------------------------------------------------------------------------
class Conv2d(Function):
    """y = conv(x, w) + b; backward: gx by the engine's input gradient, gw by its weight gradient."""

    def forward(self, x, w, b, stride, padding, dilation, groups):
        self.args = (stride, padding, dilation, groups)
        self.x, self.w, self.hw = x, w, x.shape[2:]
        # The dispatcher; a depthwise conv adds its bias as it writes y.
        return algorithms.run_forward(x, w, b, stride, padding, dilation, groups)

    def backward(self, g):
        need = self.needs_input_grad  # a depthwise conv gets both gradients in one pass
        gx, gw = algorithms.run_backward(self.x, g, self.w, *self.args, need[0], need[1])
        gb = _bias_grad(g) if need[2] else None
        return gx, gw, gb


def _conv_args(op, input, weight, stride, dilation):
    """The checks conv2d and conv_transpose2d share: (x, w, stride pair, dilation pair)."""
    x = _array(op, "input", input, (3, 4))
    w = _array(op, "weight", weight, 4)
    check_same_dtype(op, "input", x, "weight", w)
    return x, w, _ints(op, "stride", stride, 1), _ints(op, "dilation", dilation, 1)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) over (N, C, H, W), as ``torch.nn.functional.conv2d``.

    Shape:
        input (N, C, H, W) or (C, H, W); weight (O, C/groups, KH, KW); bias (O,) or None.
        Output (N, O, OH, OW) with OH = (H + 2*padding - dilation*(KH-1) - 1) // stride + 1
        (likewise OW). ``padding`` is an int, a pair, 'valid' (0) or 'same' (stride 1 only;
        output size = input size, the odd pixel of padding at the bottom/right).

    >>> import numpy as np
    >>> conv2d(np.ones((1, 3, 5, 5), np.float32), np.ones((2, 3, 3, 3), np.float32), stride=2, padding=1).shape
    (1, 2, 3, 3)
    """
    op = "conv2d"
    x, w, stride, dilation = _conv_args(op, input, weight, stride, dilation)
    O, Cg, KH, KW = w.shape
    C = x.shape[-3]
    _check_groups(op, groups, C, O, "out_channels (weight.shape[0])")
    if C != Cg * groups:
        raise ValueError(
            f"{op}: input has {C} channels but weight expects {Cg * groups} "
            f"(weight.shape[1]={Cg} x groups={groups}); input shape {tuple(x.shape)}, "
            f"weight shape {tuple(w.shape)}"
        )
    pad = _padding(op, padding, x.shape[-2:], (KH, KW), stride, dilation)
    _check_output(op, x.shape[-2:], (KH, KW), stride, pad, dilation)
    b = _check_bias(op, bias, O, x.dtype)
    bias = bias if isinstance(bias, Tensor) else b
    weight = weight if isinstance(weight, Tensor) else w
    return _batched(
        input if isinstance(input, Tensor) else x,
        x,
        lambda x4: Conv2d.apply(x4, weight, bias, stride=stride, padding=pad, dilation=dilation, groups=int(groups)),
    )


# ----- conv_transpose2d --------------------------------------------------------------------
class ConvTranspose2d(Function):
    """y = conv^T(x, w) + b, the adjoint of conv2d with the same (stride, padding, dilation).

    With A the conv2d operator of weight w: y = A^T x, so gx = A g (conv2d forward) and gw is
    conv2d's weight gradient with the roles swapped (g is the conv2d input, x its output grad).
    """

    def forward(self, x, w, b, stride, padding, dilation, groups, out_hw):
        self.args = (stride, padding, dilation, groups)
        self.x, self.w = x, w
        y = conv_gemm.input_grad(x, w, out_hw, stride, padding, dilation, groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, g):
        need = self.needs_input_grad
        gx = conv_gemm.forward(g, self.w, *self.args) if need[0] else None
        gw = conv_gemm.weight_grad(g, self.x, self.w.shape[2:], *self.args) if need[1] else None
        gb = _bias_grad(g) if need[2] else None
        return gx, gw, gb


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution ("deconvolution"), as ``torch.nn.functional.conv_transpose2d``.

    It is the gradient of conv2d with respect to its input: each input pixel scatters
    weight-scaled copies of the kernel into the output.

    Shape:
        input (N, C, H, W) or (C, H, W); weight (C, O/groups, KH, KW); bias (O,) or None.
        Output (N, O, OH, OW) with
        OH = (H - 1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1 (likewise OW);
        ``output_padding`` (< stride or < dilation) adds rows/columns at the bottom/right.

    >>> import numpy as np
    >>> conv_transpose2d(np.ones((1, 2, 3, 3), np.float32), np.ones((2, 4, 3, 3), np.float32), stride=2, padding=1).shape
    (1, 4, 5, 5)
    """
    op = "conv_transpose2d"
    x, w, stride, dilation = _conv_args(op, input, weight, stride, dilation)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints, got {padding!r}")
    p = _ints(op, "padding", padding, 0)
    op_ = _ints(op, "output_padding", output_padding, 0)
    Cin, Og, KH, KW = w.shape
    C = x.shape[-3]
    _check_groups(op, groups, C, Cin, "weight.shape[0]")
    if C != Cin:
        raise ValueError(
            f"{op}: input has {C} channels but weight expects {Cin} (weight.shape[0]); "
            f"input shape {tuple(x.shape)}, weight shape {tuple(w.shape)}"
        )
    for i in range(2):
        if not (op_[i] < stride[i] or op_[i] < dilation[i]):
            raise ValueError(
                f"{op}: output_padding={op_} must be smaller than either stride={stride} "
                f"or dilation={dilation} in every dimension"
            )
    H, W = x.shape[-2:]
    out_hw = tuple(
        (n - 1) * s - 2 * pp + effective_kernel(k, d) + o
        for n, s, pp, k, d, o in zip((H, W), stride, p, (KH, KW), dilation, op_)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{op}: computed output size {out_hw} is too small (each must be >= 1); "
            f"out = (in - 1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1 with "
            f"input size={(H, W)}, stride={stride}, padding={p}, kernel_size={(KH, KW)}, "
            f"dilation={dilation}, output_padding={op_}"
        )
    # The conv2d it transposes maps out_hw back to (H, W): padding (p, p - output_padding)
    # drops the extra bottom rows from its window count (a negative amount crops).
    pad = ((p[0], p[0] - op_[0]), (p[1], p[1] - op_[1]))
    b = _check_bias(op, bias, Og * groups, x.dtype)
    bias = bias if isinstance(bias, Tensor) else b
    weight = weight if isinstance(weight, Tensor) else w
    return _batched(
        input if isinstance(input, Tensor) else x,
        x,
        lambda x4: ConvTranspose2d.apply(
            x4, weight, bias, stride=stride, padding=pad, dilation=dilation, groups=int(groups), out_hw=out_hw
        ),
    )


# ----- unfold / fold -----------------------------------------------------------------------
class Unfold(Function):
    def forward(self, x, kernel, stride, padding, dilation):
        self.args = (kernel, stride, padding, dilation)
        self.shape = x.shape
        return im2col(x, kernel, stride, padding, dilation)

    def backward(self, g):
        return (col2im(g, self.shape, *self.args),)


class Fold(Function):
    def forward(self, cols, x_shape, kernel, stride, padding, dilation):
        self.args = (kernel, stride, padding, dilation)
        return col2im(cols, x_shape, *self.args)

    def backward(self, g):
        return (im2col(g, *self.args),)


def _window_args(op, kernel_size, dilation, padding, stride):
    kernel = _ints(op, "kernel_size", kernel_size, 1)
    dilation = _ints(op, "dilation", dilation, 1)
    stride = _ints(op, "stride", stride, 1)
    p = _ints(op, "padding", padding, 0)
    return kernel, dilation, ((p[0], p[0]), (p[1], p[1])), stride


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: sliding local blocks as columns, as ``torch.nn.functional.unfold``.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C*KH*KW, L) or (C*KH*KW, L), L = OH*OW.
        Row c*KH*KW + kh*KW + kw holds channel c at kernel tap (kh, kw) (Caffe's layout), so a
        convolution is ``weight.reshape(O, -1) @ unfold(x, (KH, KW))``.

    >>> import numpy as np
    >>> unfold(np.zeros((2, 3, 4, 4), np.float32), 3).shape
    (2, 27, 4)
    """
    op = "unfold"
    x = _array(op, "input", input, (3, 4))
    kernel, dilation, pad, stride = _window_args(op, kernel_size, dilation, padding, stride)
    _check_output(op, x.shape[-2:], kernel, stride, pad, dilation)
    return _batched(
        input if isinstance(input, Tensor) else x,
        x,
        lambda x4: Unfold.apply(x4, kernel=kernel, stride=stride, padding=pad, dilation=dilation),
    )


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im: sum columns of sliding blocks back into an image, as ``torch.nn.functional.fold``.

    The adjoint of ``unfold``: where blocks overlap, their entries add up.

    Shape:
        input (N, C*KH*KW, L) or (C*KH*KW, L) -> (N, C, H, W) or (C, H, W), with
        (H, W) = output_size and L the number of blocks ``unfold`` makes of an (H, W) image.

    >>> import numpy as np
    >>> fold(np.ones((1, 9, 4), np.float32), (4, 4), 3).numpy()[0, 0, 1]  # pixels in 2, 4, 4, 2 blocks
    array([2., 4., 4., 2.], dtype=float32)
    """
    op = "fold"
    c = _array(op, "input", input, (2, 3))
    kernel, dilation, pad, stride = _window_args(op, kernel_size, dilation, padding, stride)
    hw = _ints(op, "output_size", output_size, 1)
    KK = kernel[0] * kernel[1]
    if c.shape[-2] % KK:
        raise ValueError(
            f"{op}: input.shape[-2]={c.shape[-2]} must be divisible by the number of kernel "
            f"positions kernel_size[0]*kernel_size[1]={KK}; input shape {tuple(c.shape)}"
        )
    out = _check_output(op, hw, kernel, stride, pad, dilation)
    if c.shape[-1] != out[0] * out[1]:
        raise ValueError(
            f"{op}: input.shape[-1]={c.shape[-1]} must equal the number of blocks "
            f"{out[0]}*{out[1]}={out[0] * out[1]} that kernel_size={kernel}, dilation={dilation}, "
            f"padding={pad}, stride={stride} make of output_size={hw}"
        )
    C = c.shape[-2] // KK
    x = input if isinstance(input, Tensor) else c
    if c.ndim == 2:
        x = x.reshape((1,) + c.shape)
    N = 1 if c.ndim == 2 else c.shape[0]
    y = Fold.apply(x, x_shape=(N, C) + hw, kernel=kernel, stride=stride, padding=pad, dilation=dilation)
    return y.reshape(y.shape[1:]) if c.ndim == 2 else y


# ----- linear -----------------------------------------------------------------------------
class Linear(Function):
    """y = x @ w^T + b over the last axis: a 1x1 convolution of a 1x1 image, one GEMM."""

    def forward(self, x, w, b):
        self.x, self.w = x, w
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, g):
        need = self.needs_input_grad
        gx = g @ self.w if need[0] else None
        gw = gb = None
        if need[1]:
            F = self.w.shape[1]
            gw = g.reshape(-1, g.shape[-1]).T @ self.x.reshape(-1, F)
        if need[2]:
            gb = g.reshape(-1, g.shape[-1]).sum(axis=0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    """Affine map y = x W^T + b, as ``torch.nn.functional.linear``.

    Shape:
        input (*, in_features); weight (out_features, in_features); bias (out_features,) or
        None. Output (*, out_features).

    >>> import numpy as np
    >>> linear(np.ones((4, 3), np.float32), np.ones((2, 3), np.float32)).shape
    (4, 2)
    """
    op = "linear"
    x = _array(op, "input", input)
    w = _array(op, "weight", weight, 2)
    check_same_dtype(op, "input", x, "weight", w)
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have at least 1 dimension, got a scalar")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"{op}: input has {x.shape[-1]} features (input.shape[-1]) but weight expects "
            f"{w.shape[1]} (weight.shape[1]); input shape {tuple(x.shape)}, weight shape {tuple(w.shape)}"
        )
    b = _check_bias(op, bias, w.shape[0], x.dtype)
    return Linear.apply(
        input if isinstance(input, Tensor) else x,
        weight if isinstance(weight, Tensor) else w,
        bias if isinstance(bias, Tensor) else b,
    )
