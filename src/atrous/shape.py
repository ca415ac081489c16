"""Shape arithmetic shared by convolution, pooling, summaries and importers.

The one formula behind all of them: a window of ``kernel`` taps spaced ``dilation`` apart
covers ``d*(k-1) + 1`` input pixels, and sliding it by ``stride`` over an input padded by
``lo`` and ``hi`` gives ``floor((in + lo + hi - d*(k-1) - 1) / s) + 1`` positions.
"""
from __future__ import annotations

import math


def pair(value, name="value", op="op"):
    """Normalise an int or a length-2 sequence to a tuple of two ints."""
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or (hasattr(value, "__index__") and not hasattr(value, "__len__")):
        return (int(value), int(value))
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) == 1:
        items = items * 2
    if len(items) != 2 or not all(isinstance(v, int) or hasattr(v, "__index__") for v in items):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in items)


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Input extent of a dilated kernel: d*(k-1) + 1 (a 3x3 at rate 2 spans 5x5)."""
    return dilation * (kernel - 1) + 1


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    """Output length of a convolution or pooling window along one axis.

    ``padding`` is an int (both sides) or a ``(lo, hi)`` pair.
    out = floor((in + lo + hi - d*(k-1) - 1) / s) + 1, or ceil for ``ceil_mode`` (as pooling,
    where PyTorch then drops a last window that would start inside the right padding).

    >>> conv_output_size(227, 11, stride=4)
    55
    """
    lo, hi = (padding, padding) if isinstance(padding, int) else padding
    span = size + lo + hi - effective_kernel(kernel, dilation)
    if ceil_mode:
        out = -(-span // stride) + 1
        # The last window must start inside the input or the left padding.
        if (out - 1) * stride >= size + lo:
            out -= 1
    else:
        out = span // stride + 1
    return out


def same_padding(size, kernel, stride=1, dilation=1):
    """(lo, hi) padding that gives ceil(in / stride) outputs, the extra pixel at the end.

    For stride 1 this is PyTorch's ``padding='same'``; for any stride it is TensorFlow's SAME.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return (total // 2, total - total // 2)
