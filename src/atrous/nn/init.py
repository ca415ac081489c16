"""Weight initialisation with ``torch.nn.init``'s names, formulas and in-place semantics.

Each function fills a Tensor/Parameter's ``.data`` (or a bare array) in place and returns it.
Random draws come from ``atrous.random.default_generator()`` (seeded by
``atrous.manual_seed``) unless a NumPy ``generator`` is passed. Values are drawn in float64
and cast to the tensor's dtype.

The variance-preserving rules, for a weight of shape (out, in, *kernel):
fan_in = in * prod(kernel), fan_out = out * prod(kernel);
xavier: std = gain * sqrt(2 / (fan_in + fan_out)); kaiming: std = gain / sqrt(fan);
a uniform(-b, b) has std b / sqrt(3), so its bound is b = sqrt(3) * std.

>>> import numpy as np
>>> w = np.empty((64, 3, 3, 3), dtype=np.float32)
>>> _ = kaiming_uniform_(w, a=5 ** 0.5)
>>> bool(np.abs(w).max() <= 1 / np.sqrt(27))
True
"""
from __future__ import annotations

import math

import numpy as np

from .. import random as _random
from ..backend import get_array_module
from ..tensor import Tensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "bilinear_",
]


def _array(tensor):
    arr = tensor.data if isinstance(tensor, Tensor) else tensor
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        raise TypeError(f"init: expected a Tensor, Parameter or array, got {type(tensor).__name__}")
    return arr


def _fill(tensor, values):
    arr = _array(tensor)
    xp = get_array_module(arr)
    arr[...] = xp.asarray(values).astype(arr.dtype, copy=False)
    return tensor


def _gen(generator):
    return _random.default_generator() if generator is None else generator


def calculate_gain(nonlinearity, param=None):
    """The gain that keeps activations' variance: 1 for linear/conv/sigmoid, 5/3 for tanh,
    sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope 0.01 by default), 3/4 for selu.
    """
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = _array(tensor).shape
    if len(shape) < 2:
        raise ValueError(
            f"init: fan in and fan out can not be computed for a tensor with fewer than 2 "
            f"dimensions, got shape {tuple(shape)}"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode {mode!r} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _draw_dtype(arr):
    # Draw float32 parameters directly in float32: half the memory traffic of drawing
    # float64 and converting, which dominates building a 138M-parameter VGG.
    return arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    arr = _array(tensor)
    values = _gen(generator).random(size=arr.shape, dtype=_draw_dtype(arr))
    values *= b - a
    values += a
    return _fill(tensor, values)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    arr = _array(tensor)
    values = _gen(generator).standard_normal(size=arr.shape, dtype=_draw_dtype(arr))
    values *= std
    values += mean
    return _fill(tensor, values)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with N(mean, std^2) restricted to [a, b] (a and b are absolute bounds, as PyTorch).

    Out-of-range draws are redrawn until every value lies in [a, b] (rejection sampling).
    """
    if not a < b:
        raise ValueError(f"trunc_normal_: expected a < b, got a={a}, b={b}")
    gen = _gen(generator)
    shape = _array(tensor).shape
    values = gen.normal(mean, std, size=shape)
    bad = (values < a) | (values > b)
    for _ in range(1000):
        if not bad.any():
            break
        values[bad] = gen.normal(mean, std, size=int(bad.sum()))
        bad = (values < a) | (values > b)
    else:
        # [a, b] holds almost none of the mass; the clip keeps the contract of the bounds.
        values = np.clip(values, a, b)
    return _fill(tensor, values)


def constant_(tensor, val):
    """Fill with the constant ``val``."""
    _array(tensor)[...] = val
    return tensor


def ones_(tensor):
    return constant_(tensor, 1)


def zeros_(tensor):
    return constant_(tensor, 0)


def eye_(tensor):
    """Fill a 2-D tensor with the identity matrix."""
    arr = _array(tensor)
    if arr.ndim != 2:
        raise ValueError(f"eye_: only 2-D tensors are supported, got shape {tuple(arr.shape)}")
    return _fill(tensor, np.eye(*arr.shape))


def dirac_(tensor, groups=1):
    """Fill a conv weight (out, in, kh, kw) so the convolution is the identity on each group."""
    arr = _array(tensor)
    if arr.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3-, 4- and 5-D tensors are supported, got shape {arr.shape}")
    out_per_group = arr.shape[0] // groups
    if arr.shape[0] % groups != 0:
        raise ValueError(f"dirac_: dim 0 ({arr.shape[0]}) must be divisible by groups ({groups})")
    values = np.zeros(arr.shape)
    centre = tuple(s // 2 for s in arr.shape[2:])
    for g in range(groups):
        for d in range(min(out_per_group, arr.shape[1])):
            values[(g * out_per_group + d, d) + centre] = 1
    return _fill(tensor, values)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He: U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).

    PyTorch's default for conv and linear weights is ``a=sqrt(5)``: b = 1 / sqrt(fan_in).
    """
    arr = _array(tensor)
    if 0 in arr.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He: N(0, std^2) with std = gain / sqrt(fan)."""
    arr = _array(tensor)
    if 0 in arr.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain=1, generator=None):
    """Fill with a (semi-)orthogonal matrix over (dim 0, all other dims flattened), times gain.

    QR of a Gaussian matrix, with the signs of R's diagonal folded into Q so the result is
    uniformly distributed (Saxe et al.).
    """
    arr = _array(tensor)
    if arr.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got {arr.shape}")
    if arr.size == 0:
        return tensor
    rows = arr.shape[0]
    cols = arr.size // rows
    flat = _gen(generator).normal(0.0, 1.0, size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(arr.shape))


def _bilinear_taps(size):
    """The 1-D tent of FCN's ``upsample_filt``: 1 - |j - centre| / factor, j = 0..size-1, with
    factor = ceil(size / 2) and the centre on a tap (odd size) or between two (even)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(size) - centre) / factor


def bilinear_(tensor):
    """Fill a ``ConvTranspose2d`` weight (in, out/groups, kh, kw) with the bilinear upsampling
    kernel, one channel to the same channel (FCN's ``interp`` surgery, Long et al. 2015).

    The kernel is the outer product of two tents (:func:`_bilinear_taps`), placed on the
    diagonal ``weight[c, c]`` (zeros elsewhere), or on every ``weight[c, 0]`` when out/groups
    is 1 (a depthwise upsampler). With stride s, kernel 2s and padding s // 2 (s even; an odd
    s takes kernel 2s - 1), the layer maps (H, W) to (sH, sW) and equals
    ``interpolate(scale_factor=s, mode='bilinear', align_corners=False)`` except in the
    outer s // 2 rows and columns: the tents of neighbouring inputs, s apart, overlap into
    linear interpolation, and input pixel i's tent peaks at output i*s + (s - 1)/2, the
    centre of its s x s block; at the border the transposed convolution sees zeros where
    interpolate repeats the edge pixel.

    Raises ValueError unless the weight is 4-D with in == out/groups or out/groups == 1.

    >>> w = np.empty((3, 3, 4, 4), np.float32)
    >>> bilinear_(w)[0, 0, :, 0]
    array([0.0625, 0.1875, 0.1875, 0.0625], dtype=float32)
    """
    arr = _array(tensor)
    if arr.ndim != 4:
        raise ValueError(
            f"bilinear_: expected a 4-D ConvTranspose2d weight (in, out/groups, kh, kw), got "
            f"shape {tuple(arr.shape)}"
        )
    cin, cout = arr.shape[:2]
    if cout != 1 and cin != cout:
        raise ValueError(
            f"bilinear_: upsampling maps each channel to itself, so the weight needs "
            f"in_channels == out_channels/groups or out_channels/groups == 1, got shape "
            f"{tuple(arr.shape)}"
        )
    kernel = np.outer(_bilinear_taps(arr.shape[2]), _bilinear_taps(arr.shape[3]))
    values = np.zeros(arr.shape)
    if cout == 1:
        values[:, 0] = kernel
    else:
        values[np.arange(cin), np.arange(cin)] = kernel
    return _fill(tensor, values)
