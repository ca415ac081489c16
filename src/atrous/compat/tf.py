"""TensorFlow's convolution API: ``tf.nn.conv2d``, ``atrous_conv2d``, ``depthwise_conv2d``,
``conv2d_transpose``, and converters between TensorFlow's and PyTorch's layouts.

TensorFlow's conventions, which live here only:

* data is NHWC by default (``data_format='NCHW'`` is accepted too);
* filters are HWIO, ``[filter_height, filter_width, in_channels, out_channels]``;
* ``strides``/``dilations`` are an int, or a list of 1, 2 or 4 ints (4: in data_format order,
  1 in the batch and channel entries);
* ``padding`` is 'VALID' (none), explicit (4 ``[before, after]`` pairs in data_format order),
  or 'SAME': ceil(in / stride) outputs, total padding
  ``max((ceil(in/s) - 1)*s + d*(k-1) + 1 - in, 0)`` and the odd pixel at the bottom/right
  (pad_top = total // 2). PyTorch code that pads k//2 on both sides reads different windows
  whenever that total is odd (a 3x3, stride-2 conv of an even-sized image).

Every op is a thin wrapper over the one convolution engine, which takes ``(lo, hi)`` padding
per axis natively: the layouts are permuted (differentiably) to NCHW/OIHW, the engine's
``Conv2d``/``ConvTranspose2d`` Functions run, and the result is permuted back. Inputs are
NumPy arrays or ``atrous.Tensor``; outputs are Tensors; gradients flow to input and filters.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import ops
from .._validate import check_float, check_same_dtype
from ..autograd import Function
from ..backend import get_array_module
from ..functional.conv import Conv2d, ConvTranspose2d
from ..shape import conv_output_size, effective_kernel, same_padding
from ..tensor import Tensor

__all__ = [
    "conv2d",
    "atrous_conv2d",
    "depthwise_conv2d",
    "conv2d_transpose",
    "hwio_to_oihw",
    "oihw_to_hwio",
    "nhwc_to_nchw",
    "nchw_to_nhwc",
]

# data_format -> ((height axis, width axis), channel axis) of a 4-D tensor
_AXES = {"NHWC": ((1, 2), 3), "NCHW": ((2, 3), 1)}
_NHWC_TO_NCHW, _NCHW_TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
_HWIO_TO_OIHW, _OIHW_TO_HWIO = (3, 2, 0, 1), (2, 3, 1, 0)


# ----- layout permutations ------------------------------------------------------------------
class Permute(Function):
    """Axes permuted into a contiguous array (later reshapes are free); backward permutes back."""

    def forward(self, a, axes):
        xp = get_array_module(a)
        self.inverse = tuple(int(i) for i in np.argsort(axes))
        return xp.ascontiguousarray(xp.transpose(a, axes))

    def backward(self, g):
        xp = get_array_module(g)
        return (xp.ascontiguousarray(xp.transpose(g, self.inverse)),)


def _permute(x, axes, contiguous=True):
    """``x`` with its axes permuted: a differentiable Tensor for a Tensor, else an array.

    ``contiguous=False`` gives a view (the engine copies its operands into its own buffers).
    """
    if isinstance(x, Tensor):
        return Permute.apply(x, axes=axes) if contiguous else ops.Transpose.apply(x, axes=axes)
    xp = get_array_module(x)
    y = xp.transpose(x, axes)
    return xp.ascontiguousarray(y) if contiguous else y


def _convert(op, name, x, axes, layout):
    a = x.data if isinstance(x, Tensor) else x
    if not hasattr(a, "ndim"):
        if not isinstance(a, (list, tuple)):
            raise TypeError(f"{op}: {name} must be an array or Tensor, got {type(x).__name__}")
        a = x = np.asarray(a)
    if a.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-D {layout}, got {a.ndim}-D with shape {tuple(a.shape)}")
    return _permute(x, axes)


def hwio_to_oihw(filters):
    """TensorFlow/Keras filters ``[KH, KW, in_channels, out_channels]`` -> PyTorch weight (O, I, KH, KW).

    Arrays give contiguous arrays, Tensors give (differentiable) Tensors. Load a Keras Conv2D
    kernel into ``nn.Conv2d``: ``conv.weight.data[...] = hwio_to_oihw(keras_kernel)``.

    >>> hwio_to_oihw(np.zeros((3, 5, 2, 8))).shape
    (8, 2, 3, 5)
    """
    layout = "[filter_height, filter_width, in_channels, out_channels]"
    return _convert("hwio_to_oihw", "filters", filters, _HWIO_TO_OIHW, layout)


def oihw_to_hwio(weight):
    """PyTorch weight (O, I, KH, KW) -> TensorFlow filters ``[KH, KW, I, O]``; inverse of ``hwio_to_oihw``.

    >>> oihw_to_hwio(np.zeros((8, 2, 3, 5))).shape
    (3, 5, 2, 8)
    """
    return _convert("oihw_to_hwio", "weight", weight, _OIHW_TO_HWIO, "(out_channels, in_channels, KH, KW)")


def nhwc_to_nchw(input):
    """(N, H, W, C) -> (N, C, H, W), an array for an array, a Tensor for a Tensor.

    >>> nhwc_to_nchw(np.zeros((2, 5, 7, 3))).shape
    (2, 3, 5, 7)
    """
    return _convert("nhwc_to_nchw", "input", input, _NHWC_TO_NCHW, "(N, H, W, C)")


def nchw_to_nhwc(input):
    """(N, C, H, W) -> (N, H, W, C); inverse of ``nhwc_to_nchw``.

    >>> nchw_to_nhwc(np.zeros((2, 3, 5, 7))).shape
    (2, 5, 7, 3)
    """
    return _convert("nchw_to_nhwc", "input", input, _NCHW_TO_NHWC, "(N, C, H, W)")


# ----- argument checks (TensorFlow's argument names) ----------------------------------------
def _operand(op, name, x, rank, layout):
    """(x, array): ``x`` kept as given when it is a Tensor/array (so gradients reach it)."""
    a = x.data if isinstance(x, Tensor) else x
    if not hasattr(a, "ndim"):
        if not isinstance(a, (list, tuple)):
            raise TypeError(f"{op}: {name} must be an array or Tensor, got {type(x).__name__}")
        a = x = np.asarray(a)
    ok = a.ndim >= 4 if rank == "4+" else a.ndim == rank
    if not ok:
        want = "at least 4-D" if rank == "4+" else f"{rank}-D"
        raise ValueError(f"{op}: {name} must be {want} {layout}, got {a.ndim}-D with shape {tuple(a.shape)}")
    check_float(op, name, a)
    return x, a


def _data_format(op, data_format):
    if data_format is None:
        return "NHWC"
    if data_format not in _AXES:
        raise ValueError(f"{op}: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    return data_format


def _int_list(op, name, value, what):
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{op}: {name} must be {what}, got {value!r}")
    items = list(np.asarray(value).ravel()) if hasattr(value, "ndim") else list(value)
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{op}: {name} must be {what}, got {value!r}")
    return [int(v) for v in items]


def _spatial(op, name, value, data_format):
    """TensorFlow's strides/dilations -> (H, W): an int, or 1, 2 or 4 ints (data_format order)."""
    if value is None:
        return (1, 1)
    what = f"an int or a list of 1, 2 or 4 ints (data_format {data_format!r} order)"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        hw = (int(value),) * 2
    else:
        items = _int_list(op, name, value, what)
        if len(items) == 4:
            (h, w), c = _AXES[data_format]
            if items[0] != 1 or items[c] != 1:
                raise ValueError(
                    f"{op}: {name}={items} must be 1 in the batch and channel dimensions "
                    f"(data_format {data_format!r}); only spatial {name} are supported"
                )
            hw = (items[h], items[w])
        elif len(items) in (1, 2):
            hw = (items[0], items[-1])
        else:
            raise ValueError(f"{op}: {name} must be {what}, got {len(items)} values: {items}")
    if min(hw) < 1:
        raise ValueError(f"{op}: {name} must be >= 1 in every spatial dimension, got {value!r}")
    return hw


def _padding(op, padding, data_format, in_hw, kernel, stride, dilation, explicit=True):
    """TensorFlow's padding -> ((top, bottom), (left, right)) for an input of size ``in_hw``."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "SAME":
            # ceil(in/s) outputs; the odd pixel of padding at the bottom/right.
            return tuple(same_padding(in_hw[i], kernel[i], stride[i], dilation[i]) for i in range(2))
        if mode == "VALID":
            return ((0, 0), (0, 0))
    what = "'SAME', 'VALID' or a list of 4 [before, after] pairs" if explicit else "'SAME' or 'VALID'"
    if isinstance(padding, str) or not explicit:
        raise ValueError(f"{op}: padding must be {what}, got {padding!r}")
    rows = padding.tolist() if hasattr(padding, "tolist") else padding
    if not hasattr(rows, "__len__") or len(rows) != 4 or not all(
        hasattr(r, "__len__") and not isinstance(r, str) and len(r) == 2 for r in rows
    ):
        raise ValueError(
            f"{op}: explicit padding must be 4 [before, after] pairs in data_format order, got {padding!r}"
        )
    flat = _int_list(op, "padding", [v for r in rows for v in r], what)
    pairs = [tuple(flat[2 * i : 2 * i + 2]) for i in range(4)]
    (h, w), c = _AXES[data_format]
    if pairs[0] != (0, 0) or pairs[c] != (0, 0):
        raise ValueError(
            f"{op}: explicit padding {pairs} must be [0, 0] in the batch and channel dimensions "
            f"(data_format {data_format!r})"
        )
    if min(flat) < 0:
        raise ValueError(f"{op}: explicit padding must be non-negative, got {pairs}")
    return (pairs[h], pairs[w])


def _output_hw(op, in_hw, kernel, stride, pad, dilation, context):
    out = tuple(conv_output_size(in_hw[i], kernel[i], stride[i], pad[i], dilation[i]) for i in range(2))
    if min(out) < 1:
        span = tuple(effective_kernel(kernel[i], dilation[i]) for i in range(2))
        raise ValueError(
            f"{op}: computed output size {out} is too small (each must be >= 1): the dilated filter "
            f"spans {span} pixels but the input's spatial size is {tuple(in_hw)} with padding {pad} "
            f"(strides={stride}, dilations={dilation}); {context}"
        )
    return out


def _run(fn, x, w, data_format, **options):
    """Engine call in NCHW/OIHW: permute the input in, run ``fn``, permute the result back."""
    if data_format == "NHWC":
        x = _permute(x, _NHWC_TO_NCHW, contiguous=False)
    y = fn.apply(x, w, None, **options)
    return _permute(y, _NCHW_TO_NHWC) if data_format == "NHWC" else y


def _reshape(x, shape):
    return x.reshape(shape)  # Tensor.reshape is differentiable; ndarray.reshape is a view


# ----- conv2d and atrous_conv2d --------------------------------------------------------------
def _conv2d(op, names, input, filters, strides, padding, data_format, dilations, explicit=True):
    data_format = _data_format(op, data_format)
    x, xa = _operand(op, names[0], input, "4+", f"({', '.join(data_format)})")
    f, fa = _operand(op, names[1], filters, 4, "[filter_height, filter_width, in_channels, out_channels]")
    check_same_dtype(op, names[0], xa, names[1], fa)
    lead = xa.shape[:-3]
    if xa.ndim > 4:  # TensorFlow's batch_shape: leading dims fold into one batch axis
        x = _reshape(x, (math.prod(lead),) + xa.shape[-3:])
    (ha, wa), ca = _AXES[data_format]
    shape = xa.shape[-3:]
    C, in_hw = shape[ca - 1], (shape[ha - 1], shape[wa - 1])
    KH, KW, I, O = fa.shape
    shapes = f"{names[0]} shape {tuple(xa.shape)} ({data_format}), {names[1]} shape {tuple(fa.shape)}"
    if I < 1 or C % I:
        raise ValueError(
            f"{op}: {names[0]} depth {C} is not a multiple of {names[1]}.shape[2]={I} (in_channels); {shapes}"
        )
    groups = C // I
    if O % groups:
        raise ValueError(
            f"{op}: {names[1]}.shape[3]={O} (out_channels) is not a multiple of the number of groups "
            f"{groups} ({names[0]} depth {C} / in_channels {I}); {shapes}"
        )
    stride = _spatial(op, "strides", strides, data_format)
    dilation = _spatial(op, "dilations" if op != "atrous_conv2d" else "rate", dilations, data_format)
    pad = _padding(op, padding, data_format, in_hw, (KH, KW), stride, dilation, explicit)
    _output_hw(op, in_hw, (KH, KW), stride, pad, dilation, shapes)
    w = _permute(f, _HWIO_TO_OIHW, contiguous=False)
    y = _run(Conv2d, x, w, data_format, stride=stride, padding=pad, dilation=dilation, groups=groups)
    return _reshape(y, lead + y.shape[1:]) if xa.ndim > 4 else y


def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None):
    """2-D convolution with TensorFlow's semantics, as ``tf.nn.conv2d``.

    Shape:
        input (N, H, W, C) for 'NHWC' (more leading batch dims are allowed) or (N, C, H, W)
        for 'NCHW'; filters [KH, KW, C/groups, O], groups = C / filters.shape[2] (grouped
        convolution when the input depth is a multiple of the filter's in_channels).
        Output (N, OH, OW, O) or (N, O, OH, OW) with, per axis and d the dilation,
        'SAME': OH = ceil(H / stride), padded by total = max((OH-1)*stride + d*(KH-1) + 1 - H, 0),
        total // 2 on top and the rest at the bottom (likewise left/right);
        'VALID': OH = (H - d*(KH-1) - 1) // stride + 1; explicit [[0, 0], [top, bottom],
        [left, right], [0, 0]] (NHWC order): OH = (H + top + bottom - d*(KH-1) - 1) // stride + 1.

    A 3x3 stride-2 SAME convolution of a 4x4 image of ones pads one row at the bottom only:

    >>> x = np.ones((1, 4, 4, 1), np.float32)
    >>> conv2d(x, np.ones((3, 3, 1, 1), np.float32), strides=2, padding="SAME").numpy()[0, :, :, 0]
    array([[9., 6.],
           [6., 4.]], dtype=float32)
    """
    return _conv2d("conv2d", ("input", "filters"), input, filters, strides, padding, data_format, dilations)


def atrous_conv2d(value, filters, rate, padding):
    """Dilated ("à trous") convolution, as ``tf.nn.atrous_conv2d``: stride 1, NHWC, taps ``rate`` apart.

    Equal to ``conv2d(value, filters, 1, padding, dilations=rate)``: a KxK filter at rate r
    sees a (r*(K-1)+1)-wide window with r-1 holes between taps, at the parameter count of KxK.

    Shape:
        value (N, H, W, C); filters [KH, KW, C, O]. Output (N, H, W, O) for 'SAME',
        (N, H - rate*(KH-1), W - rate*(KW-1), O) for 'VALID'.

    >>> atrous_conv2d(np.ones((1, 9, 9, 2), np.float32), np.ones((3, 3, 2, 4), np.float32), 2, "VALID").shape
    (1, 5, 5, 4)
    """
    op = "atrous_conv2d"
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise TypeError(f"{op}: rate must be a positive int, got {rate!r}")
    if rate < 1:
        raise ValueError(f"{op}: rate must be positive, got {rate}")
    return _conv2d(op, ("value", "filters"), value, filters, 1, padding, "NHWC", int(rate), explicit=False)


# ----- depthwise_conv2d ----------------------------------------------------------------------
def depthwise_conv2d(input, filter, strides, padding, data_format="NHWC", dilations=None):
    """Depthwise convolution, as ``tf.nn.depthwise_conv2d``: each input channel convolved on its own.

    Output channel ``c*channel_multiplier + m`` is input channel c convolved with
    ``filter[:, :, c, m]``: PyTorch's ``groups=C`` conv with weight
    ``filter.reshape(KH, KW, 1, C*M)`` in OIHW. Padding as ``conv2d`` (SAME, VALID, explicit).

    Shape:
        input (N, H, W, C) ('NHWC') or (N, C, H, W) ('NCHW'); filter [KH, KW, C, M].
        Output (N, OH, OW, C*M) or (N, C*M, OH, OW), OH/OW as ``conv2d``.

    >>> x, f = np.ones((2, 5, 5, 3), np.float32), np.ones((3, 3, 3, 2), np.float32)
    >>> depthwise_conv2d(x, f, [1, 2, 2, 1], "SAME").shape
    (2, 3, 3, 6)
    """
    op = "depthwise_conv2d"
    data_format = _data_format(op, data_format)
    x, xa = _operand(op, "input", input, 4, f"({', '.join(data_format)})")
    f, fa = _operand(op, "filter", filter, 4, "[filter_height, filter_width, in_channels, channel_multiplier]")
    check_same_dtype(op, "input", xa, "filter", fa)
    (ha, wa), ca = _AXES[data_format]
    C, in_hw = xa.shape[ca], (xa.shape[ha], xa.shape[wa])
    KH, KW, Cf, M = fa.shape
    shapes = f"input shape {tuple(xa.shape)} ({data_format}), filter shape {tuple(fa.shape)}"
    if Cf != C:
        raise ValueError(f"{op}: input depth {C} must equal filter.shape[2]={Cf} (in_channels); {shapes}")
    if C < 1 or M < 1:
        raise ValueError(f"{op}: in_channels and channel_multiplier must be >= 1; {shapes}")
    stride = _spatial(op, "strides", strides, data_format)
    dilation = _spatial(op, "dilations", dilations, data_format)
    pad = _padding(op, padding, data_format, in_hw, (KH, KW), stride, dilation)
    _output_hw(op, in_hw, (KH, KW), stride, pad, dilation, shapes)
    # [KH, KW, C, M] -> [KH, KW, 1, C*M] keeps c*M + m order -> OIHW (C*M, 1, KH, KW)
    w = _permute(_reshape(f, (KH, KW, 1, C * M)), _HWIO_TO_OIHW, contiguous=False)
    return _run(Conv2d, x, w, data_format, stride=stride, padding=pad, dilation=dilation, groups=C)


# ----- conv2d_transpose ----------------------------------------------------------------------
def _output_shape(op, output_shape, data_format):
    """(N or None, C or None, H, W) from 4 ints in data_format order, or 2 spatial ints."""
    items = _int_list(op, "output_shape", output_shape, "a list of 4 ints (data_format order) or 2 spatial ints")
    if len(items) == 4:
        (h, w), c = _AXES[data_format]
        n, c, hw = items[0], items[c], (items[h], items[w])
    elif len(items) == 2:
        n, c, hw = None, None, tuple(items)
    else:
        raise ValueError(
            f"{op}: output_shape must have 4 entries ({data_format} order) or 2 (height, width), got {items}"
        )
    if min(hw) < 1:
        raise ValueError(f"{op}: output_shape {items} must have positive spatial sizes")
    return n, c, hw, items


def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NHWC", dilations=None):
    """Transposed convolution, as ``tf.nn.conv2d_transpose``: the gradient of ``conv2d`` w.r.t. its input.

    ``output_shape`` is the shape of that conv2d's input: the result is the adjoint of
    ``conv2d(., filters, strides, padding, data_format, dilations)`` on an ``output_shape``-sized
    image, whose SAME padding is computed from ``output_shape`` (the odd pixel at the
    bottom/right). Several output sizes map to one input size under a stride, which is why
    TensorFlow asks for ``output_shape``; it must be one of them.

    Shape:
        input (N, H, W, in_channels) ('NHWC') or (N, in_channels, H, W) ('NCHW');
        filters [KH, KW, output_channels, in_channels] (note: out before in);
        output_shape 4 ints in data_format order ((N, OH, OW, output_channels) for NHWC) or
        (OH, OW). Requires conv2d's output size for (OH, OW) to be (H, W): for 'SAME',
        ceil(OH / stride) == H; for 'VALID', (OH - d*(KH-1) - 1) // stride + 1 == H.

    >>> conv2d_transpose(np.ones((1, 2, 2, 3), np.float32), np.ones((3, 3, 5, 3), np.float32), [1, 4, 4, 5], 2).shape
    (1, 4, 4, 5)
    """
    op = "conv2d_transpose"
    data_format = _data_format(op, data_format)
    x, xa = _operand(op, "input", input, 4, f"({', '.join(data_format)})")
    f, fa = _operand(op, "filters", filters, 4, "[filter_height, filter_width, output_channels, in_channels]")
    check_same_dtype(op, "input", xa, "filters", fa)
    (ha, wa), ca = _AXES[data_format]
    N, C, in_hw = xa.shape[0], xa.shape[ca], (xa.shape[ha], xa.shape[wa])
    KH, KW, Co, Ci = fa.shape
    n_out, c_out, out_hw, items = _output_shape(op, output_shape, data_format)
    shapes = (
        f"input shape {tuple(xa.shape)} ({data_format}), filters shape {tuple(fa.shape)}, "
        f"output_shape {items}"
    )
    if C != Ci:
        raise ValueError(f"{op}: input depth {C} must equal filters.shape[3]={Ci} (in_channels); {shapes}")
    if n_out is not None and n_out != N:
        raise ValueError(f"{op}: output_shape batch {n_out} must equal the input's batch {N}; {shapes}")
    if c_out is not None and c_out != Co:
        raise ValueError(
            f"{op}: output_shape depth {c_out} must equal filters.shape[2]={Co} (output_channels); {shapes}"
        )
    stride = _spatial(op, "strides", strides, data_format)
    dilation = _spatial(op, "dilations", dilations, data_format)
    pad = _padding(op, padding, data_format, out_hw, (KH, KW), stride, dilation)
    # The conv2d this transposes must map an output_shape-sized image back onto the input.
    back = tuple(conv_output_size(out_hw[i], (KH, KW)[i], stride[i], pad[i], dilation[i]) for i in range(2))
    if back != tuple(in_hw):
        raise ValueError(
            f"{op}: output_shape spatial size {out_hw} does not match the input: conv2d of an "
            f"{out_hw} image with padding {padding!r} (pads {pad}), strides={stride}, "
            f"dilations={dilation} and a {KH}x{KW} filter gives {back}, not the input's {tuple(in_hw)}; {shapes}"
        )
    # [KH, KW, out_c, in_c] is HWIO of the forward conv (out_c -> in_c): OIHW (in_c, out_c, KH, KW)
    w = _permute(f, _HWIO_TO_OIHW, contiguous=False)
    return _run(
        ConvTranspose2d, x, w, data_format, stride=stride, padding=pad, dilation=dilation, groups=1, out_hw=out_hw
    )
