"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d`` (weights and settings; the maths is
in ``atrous.functional.conv``)."""
from __future__ import annotations

import math

import numpy as np

from ..backend import DEFAULT_DTYPE
from ..shape import pair
from ..tensor import Tensor
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    def __init__(self, name, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 transposed, output_padding, groups, bias, padding_mode, dtype):
        super().__init__()
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name}: {arg} must be a positive integer, got {v!r}")
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, got {groups!r}")
        if in_channels % groups != 0:
            raise ValueError(
                f"{name}: in_channels must be divisible by groups, got in_channels={in_channels}, "
                f"groups={groups}"
            )
        if out_channels % groups != 0:
            raise ValueError(
                f"{name}: out_channels must be divisible by groups, got out_channels={out_channels}, "
                f"groups={groups}"
            )
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}"
            )
        kernel_size = pair(kernel_size, "kernel_size", name)
        stride = pair(stride, "stride", name)
        dilation = pair(dilation, "dilation", name)
        for arg, v in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
            if min(v) < 1:
                raise ValueError(f"{name}: {arg} must be >= 1 in every dimension, got {v}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: invalid padding string {padding!r}, should be one of ('valid', 'same')"
                )
            if padding == "same" and stride != (1, 1):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
        else:
            padding = pair(padding, "padding", name)
            if min(padding) < 0:
                raise ValueError(f"{name}: padding must be non-negative, got {padding}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = transposed
        self.output_padding = output_padding
        self.groups = int(groups)
        self.padding_mode = padding_mode
        dtype = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
        if transposed:
            shape = (self.in_channels, self.out_channels // self.groups, *kernel_size)
        else:
            shape = (self.out_channels, self.in_channels // self.groups, *kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((self.out_channels,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)) for the
        weight and U(+-1/sqrt(fan_in)) for the bias (fan_in from the weight's dims 1..)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _check_input(self, input):
        shape = tuple(getattr(input, "shape", np.shape(input)))
        if len(shape) not in (3, 4):
            raise ValueError(
                f"{self!r}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                f"{len(shape)}-D with shape {shape}"
            )
        if shape[-3] != self.in_channels:
            raise ValueError(
                f"{self!r}: expected input with {self.in_channels} channels (in_channels), got "
                f"{shape[-3]} channels in input of shape {shape}"
            )

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as every framework) over a batch of images.

    Parameters: ``weight`` (out_channels, in_channels/groups, kH, kW) and ``bias``
    (out_channels,), initialised as PyTorch's ``reset_parameters``.

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
        H_out = floor((H + 2*padding[0] - dilation[0]*(kH - 1) - 1) / stride[0]) + 1
        (likewise W). ``padding`` may also be 'same' (stride 1) or 'valid'.

    >>> import numpy as np
    >>> conv = Conv2d(3, 16, 3, padding=1)
    >>> conv(np.zeros((2, 3, 8, 8), np.float32)).shape
    (2, 16, 8, 8)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=None):
        super().__init__("Conv2d", in_channels, out_channels, kernel_size, stride, padding,
                         dilation, False, (0, 0), groups, bias, padding_mode, dtype)

    def forward(self, input):
        from .. import functional as F

        self._check_input(input)
        if self.padding_mode != "zeros" and self.padding != "valid":
            if self.padding == "same":
                # Same padding puts the odd extra pixel at the end (bottom/right), as PyTorch.
                pads = []
                for k, d in zip(reversed(self.kernel_size), reversed(self.dilation)):
                    total = d * (k - 1)
                    pads += [total // 2, total - total // 2]
            else:
                ph, pw = self.padding
                pads = [pw, pw, ph, ph]
            input = F.pad(input, pads, mode=self.padding_mode)
            return F.conv2d(input, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (the gradient of Conv2d with respect to its input; "deconv").

    Parameters: ``weight`` (in_channels, out_channels/groups, kH, kW) and ``bias``
    (out_channels,).

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
        H_out = (H - 1)*stride[0] - 2*padding[0] + dilation[0]*(kH - 1) + output_padding[0] + 1.
        ``forward(input, output_size=...)`` picks output_padding to reach a given size.

    >>> import numpy as np
    >>> up = ConvTranspose2d(8, 4, 2, stride=2)
    >>> up(np.zeros((1, 8, 5, 5), np.float32)).shape
    (1, 4, 10, 10)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 dtype=None):
        if padding_mode != "zeros":
            raise ValueError(
                f'ConvTranspose2d: only "zeros" padding_mode is supported, got {padding_mode!r}'
            )
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair, got {padding!r}")
        output_padding = pair(output_padding, "output_padding", "ConvTranspose2d")
        stride_, dilation_ = pair(stride, "stride", "ConvTranspose2d"), pair(dilation, "dilation", "ConvTranspose2d")
        for op, s, d in zip(output_padding, stride_, dilation_):
            if op < 0 or op >= max(s, d):
                raise ValueError(
                    f"ConvTranspose2d: output_padding must be smaller than either stride or "
                    f"dilation, got output_padding={output_padding}, stride={stride_}, "
                    f"dilation={dilation_}"
                )
        super().__init__("ConvTranspose2d", in_channels, out_channels, kernel_size, stride,
                         padding, dilation, True, output_padding, groups, bias, padding_mode, dtype)

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        output_size = tuple(int(s) for s in output_size)[-2:]
        if len(output_size) != 2:
            raise ValueError(f"{self!r}: output_size must have 2 or more elements, got {output_size}")
        in_hw = tuple(np.shape(input)[-2:]) if not isinstance(input, Tensor) else input.shape[-2:]
        result = []
        for i in range(2):
            smallest = ((in_hw[i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            largest = smallest + self.stride[i] - 1
            if not smallest <= output_size[i] <= largest:
                raise ValueError(
                    f"{self!r}: requested an output size of {output_size}, but valid sizes range "
                    f"from {smallest} to {largest} along dim {i} (for an input of {in_hw})"
                )
            result.append(output_size[i] - smallest)
        return tuple(result)

    def forward(self, input, output_size=None):
        from .. import functional as F

        self._check_input(input)
        output_padding = self._output_padding(input, output_size)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)
