"""Pooling with ``torch.nn.functional``'s names, arguments and semantics.

Inputs are (N, C, H, W) or unbatched (C, H, W). Output sizes follow PyTorch's formula
(``atrous.shape.conv_output_size``), including ceil mode's rule that the last window must start
inside the input or the left padding. Max pooling pads with -inf and sends each gradient to the
first maximum of its window (row-major), as PyTorch; average pooling divides as PyTorch does.
"""
from __future__ import annotations

from .._validate import check_float, check_positive, check_rank
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..kernels import pooling as K
from ..shape import conv_output_size, effective_kernel, pair
from ..tensor import Tensor

__all__ = [
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
]


# ----- front door -------------------------------------------------------------------------
def _array(x):
    return x.data if isinstance(x, Tensor) else x


def _check_input(op, x):
    a = _array(x)
    if not hasattr(a, "ndim"):
        raise TypeError(f"{op}: input must be an array or Tensor, got {type(x).__name__}")
    check_rank(op, "input", a, (3, 4))
    check_float(op, "input", a)
    if 0 in a.shape[-3:]:
        raise ValueError(
            f"{op}: expected non-empty (C, H, W) dimensions (batch may be 0), got shape {tuple(a.shape)}"
        )
    return a


def _wants_grad(x):
    return isinstance(x, Tensor) and x.requires_grad and is_grad_enabled()


def _window(op, a, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate the window arguments and return them as pairs plus the output size."""
    k = pair(kernel_size, "kernel_size", op)
    # stride=None (or PyTorch's empty list) means stride = kernel_size.
    if stride is None or (hasattr(stride, "__len__") and len(stride) == 0):
        s = k
    else:
        s = pair(stride, "stride", op)
    p, d = pair(padding, "padding", op), pair(dilation, "dilation", op)
    check_positive(op, "kernel_size", k)
    check_positive(op, "stride", s)
    check_positive(op, "dilation", d)
    check_positive(op, "padding", p, minimum=0)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(
            f"{op}: padding {p} must be at most half of kernel_size {k} "
            "(PyTorch: pad should be at most half of effective kernel size)"
        )
    H, W = a.shape[-2:]
    out = tuple(
        conv_output_size(n, ki, si, pi, di, ceil_mode=ceil_mode)
        for n, ki, si, pi, di in zip((H, W), k, s, p, d)
    )
    if min(out) < 1:
        ek = tuple(effective_kernel(ki, di) for ki, di in zip(k, d))
        raise ValueError(
            f"{op}: output size {out} is too small for input of shape {tuple(a.shape)}: "
            f"the (effective) kernel {ek} is larger than the padded input "
            f"({H + 2 * p[0]}, {W + 2 * p[1]}) (kernel_size={k}, stride={s}, padding={p}, dilation={d})"
        )
    return k, s, p, d, out


def _adaptive_size(op, a, output_size):
    """output_size as a pair; None keeps that input dimension. 0 gives an empty output (PyTorch)."""
    if output_size is None or isinstance(output_size, bool):
        raise TypeError(f"{op}: output_size must be an int or a pair of ints/None, got {output_size!r}")
    if isinstance(output_size, int) or hasattr(output_size, "__index__"):
        size = (int(output_size),) * 2
    else:
        size = tuple(output_size)
        if len(size) != 2:
            raise ValueError(f"{op}: output_size must have 2 elements, got {output_size!r}")
    size = tuple(n if o is None else pair(o, "output_size", op)[0] for o, n in zip(size, a.shape[-2:]))
    check_positive(op, "output_size", size, minimum=0)
    return size


def _batched(a):
    """View (C, H, W) as (1, C, H, W); return the array and a function restoring the rank."""
    if a.ndim == 4:
        return a, lambda y: y
    return a[None], lambda y: y[0]


# ----- max pooling ------------------------------------------------------------------------
class _MaxPool2d(Function):
    """Max pooling; backward routes each gradient to its window's winning tap."""

    def forward(self, x, *, geom, out_hw, need_arg, keep_arg=None):
        xb, unbatch = _batched(x)
        out, self.arg = K.max_pool2d_forward(xb, out_hw, *geom, need_arg=need_arg)
        self.geom, self.x_shape, self.unbatch = geom, xb.shape, unbatch
        if keep_arg is not None:  # return_indices: hand the winning taps to the caller
            keep_arg.append(self.arg)
        return unbatch(out)

    def backward(self, g):
        gb = g.reshape(self.arg.shape)
        return (self.unbatch(K.max_pool2d_backward(gb, self.arg, self.x_shape, *self.geom)),)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Shape:
        input (N, C, H, W) or (C, H, W) -> output (N, C, OH, OW) or (C, OH, OW) with
        OH = floor((H + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1 (ceil in
        ceil_mode, dropping a last window that would start in the right padding); same for W.
        ``stride`` defaults to ``kernel_size``. With ``return_indices`` also returns int64
        indices h*W + w of each maximum in its input plane (ties: the first in row-major order).

    >>> import numpy as np
    >>> max_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2).numpy().ravel()
    array([ 5.,  7., 13., 15.])
    """
    op = "max_pool2d"
    a = _check_input(op, input)
    k, s, p, d, out_hw = _window(op, a, kernel_size, stride, padding, dilation, ceil_mode)
    geom, kept = (k, s, p, d), []
    out = _MaxPool2d.apply(input, geom=geom, out_hw=out_hw,
                           need_arg=return_indices or _wants_grad(input),
                           keep_arg=kept if return_indices else None)
    if not return_indices:
        return out
    idx = K.max_pool2d_indices(kept[0], a.shape[-2:], *geom)
    return out, Tensor(idx if a.ndim == 4 else idx[0])


# ----- average pooling --------------------------------------------------------------------
class _AvgPool2d(Function):
    def forward(self, x, *, geom, out_hw, divisor):
        xb, self.unbatch = _batched(x)
        self.geom, self.divisor, self.x_shape = geom, divisor, xb.shape
        return self.unbatch(K.avg_pool2d_forward(xb, out_hw, *geom, divisor))

    def backward(self, g):
        gb, _ = _batched(g)
        return (self.unbatch(K.avg_pool2d_backward(gb, self.x_shape, *self.geom, self.divisor)),)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW), OH as ``max_pool2d``
        with dilation 1. Each output is the window sum over input pixels divided by
        ``divisor_override`` if given, else by the window's extent clipped to the padded input
        (``count_include_pad=True``) or to the input itself (``False``).

    >>> import numpy as np
    >>> avg_pool2d(np.ones((1, 1, 3, 3)), 2, stride=2, padding=1).numpy().ravel()
    array([0.25, 0.5 , 0.5 , 1.  ])
    """
    op = "avg_pool2d"
    a = _check_input(op, input)
    k, s, p, _, out_hw = _window(op, a, kernel_size, stride, padding, 1, ceil_mode)
    xp = get_array_module(a)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not hasattr(divisor_override, "__index__"):
            raise TypeError(f"{op}: divisor_override must be an int, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
        divisor = a.dtype.type(divisor_override)
    else:
        dh, dw = (K.avg_pool_divisor(xp, n, o, ki, si, pi, count_include_pad)
                  for n, o, ki, si, pi in zip(a.shape[-2:], out_hw, k, s, p))
        divisor = (dh[:, None] * dw[None, :]).astype(a.dtype)
    return _AvgPool2d.apply(input, geom=(k, s, p), out_hw=out_hw, divisor=divisor)


# ----- adaptive and global pooling --------------------------------------------------------
class _AdaptiveAvgPool2d(Function):
    def forward(self, x, *, out_hw):
        self.x_shape = x.shape
        return K.adaptive_avg_pool2d_forward(x, out_hw)  # matmul broadcasts over (N, C)

    def backward(self, g):
        return (K.adaptive_avg_pool2d_backward(g, self.x_shape),)


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive bins, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW) where
        ``output_size`` is an int or a pair (a None entry keeps that input size). Output i
        averages rows floor(i*H/OH) .. ceil((i+1)*H/OH) - 1, likewise columns.

    >>> import numpy as np
    >>> adaptive_avg_pool2d(np.arange(9.).reshape(1, 1, 3, 3), 2).numpy().ravel()
    array([2., 3., 5., 6.])
    """
    op = "adaptive_avg_pool2d"
    a = _check_input(op, input)
    return _AdaptiveAvgPool2d.apply(input, out_hw=_adaptive_size(op, a, output_size))


class _AdaptiveMaxPool2d(Function):
    def forward(self, x, *, out_hw, keep_indices=None):
        xb, self.unbatch = _batched(x)
        out, idx = K.adaptive_max_pool2d_forward(xb, out_hw)
        self.x_shape, self.indices = xb.shape, idx
        if keep_indices is not None:
            keep_indices.append(self.unbatch(idx))
        return self.unbatch(out)

    def backward(self, g):
        gb = g.reshape(self.indices.shape)
        return (self.unbatch(K.scatter_to_indices(gb, self.indices, self.x_shape)),)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over PyTorch's adaptive bins, as ``torch.nn.functional.adaptive_max_pool2d``.

    Shape: as ``adaptive_avg_pool2d``; with ``return_indices`` also the int64 flat index
    h*W + w of each maximum in its input plane (ties: first in row-major order).

    >>> import numpy as np
    >>> adaptive_max_pool2d(np.arange(9.).reshape(1, 1, 3, 3), (1, 2)).numpy().ravel()
    array([7., 8.])
    """
    op = "adaptive_max_pool2d"
    a = _check_input(op, input)
    out_hw = _adaptive_size(op, a, output_size)
    kept = []
    out = _AdaptiveMaxPool2d.apply(input, out_hw=out_hw, keep_indices=kept)
    return (out, Tensor(kept[0])) if return_indices else out


def global_avg_pool2d(input):
    """Mean over H and W keeping them: (N, C, H, W) -> (N, C, 1, 1), or (C, 1, 1) unbatched.

    Same as ``adaptive_avg_pool2d(input, 1)``.
    """
    return adaptive_avg_pool2d(input, 1)


def global_max_pool2d(input):
    """Max over H and W keeping them: (N, C, H, W) -> (N, C, 1, 1), or (C, 1, 1) unbatched.

    Same as ``adaptive_max_pool2d(input, 1)``.
    """
    return adaptive_max_pool2d(input, 1)
