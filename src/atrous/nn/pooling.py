"""Pooling layers: settings holders over ``atrous.functional.pooling``.

Shape (MaxPool2d, AvgPool2d): input (N, C, H, W) -> (N, C, H_out, W_out) with
H_out = floor_or_ceil((H + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1
(``ceil_mode`` drops a last window that would start in the right padding, as PyTorch).
Adaptive pooling gives (N, C, *output_size) whatever the input size.
"""
from __future__ import annotations

from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


class MaxPool2d(Module):
    """Max over sliding windows; ``stride`` defaults to ``kernel_size``.

    >>> import numpy as np
    >>> MaxPool2d(3, stride=2)(np.zeros((1, 64, 55, 55), np.float32)).shape
    (1, 64, 27, 27)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        from .. import functional as F

        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over sliding windows; ``count_include_pad`` says whether padded zeros count.

    >>> import numpy as np
    >>> AvgPool2d(2)(np.zeros((1, 3, 8, 8), np.float32)).shape
    (1, 3, 4, 4)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        from .. import functional as F

        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (an int, a pair, or None in a pair to keep
    that input dim). ``AdaptiveAvgPool2d(1)`` is global average pooling.

    >>> import numpy as np
    >>> AdaptiveAvgPool2d((1, 1))(np.zeros((2, 8, 7, 5), np.float32)).shape
    (2, 8, 1, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        from .. import functional as F

        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed ``output_size``; ``AdaptiveMaxPool2d(1)`` is global max pooling."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        from .. import functional as F

        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"
