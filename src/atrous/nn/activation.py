"""Activation layers over ``atrous.functional.activation``; all keep the input's shape.

``inplace=True`` is accepted for PyTorch compatibility and shown in the repr, but the
result is always a new array (autograd here never overwrites a saved input).
"""
from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax"]


def _inplace(flag):
    return ", inplace=True" if flag else ""


class ReLU(Module):
    """max(0, x)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        from .. import functional as F

        return F.relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x if x >= 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        from .. import functional as F

        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}{_inplace(self.inplace)}"


class PReLU(Module):
    """Leaky ReLU with a learned slope ``weight``: one shared (``num_parameters=1``) or one per
    channel (``num_parameters=C``, applied along dim 1), initialised to ``init``.

    >>> import numpy as np
    >>> PReLU(3)(np.full((2, 3, 4, 4), -1.0, np.float32)).data[0, :, 0, 0]
    array([-0.25, -0.25, -0.25], dtype=float32)
    """

    def __init__(self, num_parameters=1, init=0.25, dtype=None):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) \
                or num_parameters <= 0:
            raise ValueError(f"PReLU: num_parameters must be a positive integer, got {num_parameters!r}")
        self.num_parameters = int(num_parameters)
        self.init = init
        dtype = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
        self.weight = Parameter(np.empty((self.num_parameters,), dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init.constant_(self.weight, self.init)

    def forward(self, input):
        from .. import functional as F

        return F.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        from .. import functional as F

        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}{_inplace(self.inplace)}"


class Tanh(Module):
    def forward(self, input):
        from .. import functional as F

        return F.tanh(input)


class Sigmoid(Module):
    def forward(self, input):
        from .. import functional as F

        return F.sigmoid(input)


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along ``dim`` (rows sum to one)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        from .. import functional as F

        return F.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along ``dim``, computed stably (x - logsumexp(x))."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        from .. import functional as F

        return F.log_softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"
