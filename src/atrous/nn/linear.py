"""``Linear`` (fully connected), ``Identity`` and ``Flatten``."""
from __future__ import annotations

import math

import numpy as np

from ..backend import DEFAULT_DTYPE
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Linear", "Identity", "Flatten"]


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed classifier head).

    Accepts and ignores any constructor arguments, as PyTorch's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b, applied to the last dimension.

    Parameters: ``weight`` (out_features, in_features) and ``bias`` (out_features,), both
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as PyTorch's ``reset_parameters``.

    Shape:
        input (*, in_features) -> output (*, out_features).

    >>> import numpy as np
    >>> Linear(20, 30)(np.zeros((128, 20), np.float32)).shape
    (128, 30)
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"Linear: {arg} must be a non-negative integer, got {v!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        dtype = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((self.out_features,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        from .. import functional as F

        shape = tuple(np.shape(input)) if not hasattr(input, "shape") else tuple(input.shape)
        if len(shape) == 0 or shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r}: expected input with {self.in_features} features in its last dimension "
                f"(in_features), got input of shape {shape}"
            )
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` into one (keeps the batch dim by default).

    Shape:
        input (N, C, H, W) -> output (N, C*H*W) with the defaults.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        from .. import functional as F

        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
