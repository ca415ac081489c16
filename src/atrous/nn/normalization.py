"""``BatchNorm1d``, ``BatchNorm2d`` and ``LocalResponseNorm``.

BatchNorm keeps PyTorch's state: parameters ``weight`` (gamma, ones) and ``bias`` (beta,
zeros; left out with the keyword ``bias=False``) when ``affine``; buffers ``running_mean`` (zeros), ``running_var`` (ones) and
``num_batches_tracked`` (int64 scalar) when ``track_running_stats``. In training it
normalises with the batch statistics and updates the running ones
(running = (1 - momentum) * running + momentum * batch, the variance unbiased);
``momentum=None`` makes that a cumulative average (momentum = 1 / num_batches_tracked).
In eval it normalises with the running statistics.
"""
from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm"]


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _data(t):
    return None if t is None else t.data


class _BatchNorm(Module):
    _ranks: tuple = ()
    _layout: str = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None, *, bias=True):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features <= 0:
            raise ValueError(f"{name}: num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        if eps <= 0:
            raise ValueError(f"{name}: eps must be positive, got {eps!r}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
        if affine:
            self.weight = Parameter(np.empty((self.num_features,), dtype=dtype))
            if bias:
                self.bias = Parameter(np.empty((self.num_features,), dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros((self.num_features,), dtype=dtype))
            self.register_buffer("running_var", np.ones((self.num_features,), dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _optional_state_keys(self):
        # PyTorch fills a missing num_batches_tracked in from an unversioned state dict
        # (one saved before the buffer existed, or converted to plain arrays).
        return ("num_batches_tracked",) if self.track_running_stats else ()

    def _check_input(self, input):
        shape = _shape(input)
        if len(shape) not in self._ranks:
            want = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(
                f"{self._get_name()}({self.num_features}): expected {want} input {self._layout}, "
                f"got {len(shape)}D input of shape {shape}"
            )
        if shape[1] != self.num_features:
            raise ValueError(
                f"{self._get_name()}({self.num_features}): expected input with {self.num_features} "
                f"channels (num_features) in dim 1, got {shape[1]} channels in input of shape {shape}"
            )

    def forward(self, input):
        from .. import functional as F

        self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.data += 1  # 0-d int64 array, updated in place
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        # Eval without running statistics falls back to batch statistics, as PyTorch.
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        running_mean = _data(self.running_mean) if use_running else None
        running_var = _data(self.running_var) if use_running else None
        return F.batch_norm(input, running_mean, running_var, self.weight, self.bias,
                            bn_training, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) inputs, per channel C.

    >>> import numpy as np
    >>> BatchNorm1d(4)(np.random.rand(8, 4).astype(np.float32)).shape
    (8, 4)
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) inputs, statistics per channel over N, H, W.

    >>> import numpy as np
    >>> BatchNorm2d(16)(np.random.rand(2, 16, 5, 5).astype(np.float32)).shape
    (2, 16, 5, 5)
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class LocalResponseNorm(Module):
    """AlexNet's local response normalisation across ``size`` neighbouring channels:
    b_c = a_c / (k + alpha/size * sum_{c' near c} a_{c'}^2) ** beta (PyTorch's definition).

    Shape: input (N, C, *) -> output of the same shape.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input):
        from .. import functional as F

        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
