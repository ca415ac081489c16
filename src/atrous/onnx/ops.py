"""One small handler per ONNX operator, running it with atrous ops.

A handler is registered for an op type and *built* once per node at load time::

    @register("LeakyRelu")
    def leaky_relu(node, a):              # a: the node's attributes (see ``Attrs``)
        alpha = a.float("alpha", 0.01)
        return lambda v, training: [F.leaky_relu(v[0], alpha)]

Building parses and validates every attribute (values outside the spec, or features this
importer does not implement, raise ``OnnxImportError`` naming the node, op and opset), so a
loaded model never fails at run time on an attribute. The returned ``run(values, training)``
gets the node's inputs (``None`` for an omitted optional input) and returns its outputs.
Values are atrous ``Tensor``s on the differentiable path and plain NumPy arrays for shapes,
axes and other integer data, which the shape-like ops (Shape, Gather, Concat, Reshape...) keep
as arrays. Attribute semantics follow the ONNX spec for opsets 7-25, the version-dependent
ones (Softmax's axis, Unsqueeze/Squeeze/ReduceMean axes, Clip bounds, Pad amounts,
Dropout ratio) switch on ``node.opset``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import ops as core
from ..autograd import Function
from ..backend import get_array_module
from ..functional.conv import Conv2d, ConvTranspose2d
from ..functional.shape_ops import Pad as _PadFn
from ..random import default_generator
from ..tensor import Tensor
from .checks import OnnxRuntimeError, check_alloc

HANDLERS = {}


def register(*names):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


class Attrs:
    """A node's attributes as Python values; records which were read so leftovers can be refused."""

    def __init__(self, node, values):
        self.node, self.values, self.used = node, dict(values), set()

    def __contains__(self, name):
        return name in self.values

    def get(self, name, default=None):
        self.used.add(name)
        return self.values.get(name, default)

    def int(self, name, default):
        return int(self.get(name, default))

    def float(self, name, default):
        return float(self.get(name, default))

    def ints(self, name, default=None):
        v = self.get(name, default)
        return None if v is None else [int(i) for i in v]

    def str(self, name, default, allowed):
        v = self.get(name, default)
        v = v.decode() if isinstance(v, bytes) else v
        if v not in allowed:
            raise self.node.error(f"attribute {name}={v!r} is not supported (supported: {', '.join(allowed)})")
        return v

    def ignore(self, *names):
        """Attributes that do not change the computed values here (e.g. a dropout seed)."""
        self.used.update(names)

    def leftovers(self):
        return sorted(set(self.values) - self.used)


# ----- value helpers -------------------------------------------------------------------------
def _data(v):
    return v.data if isinstance(v, Tensor) else np.asarray(v)


def _ints(v):
    return [int(i) for i in np.asarray(_data(v)).reshape(-1)]


def _is_float(v):
    return np.issubdtype(_data(v).dtype, np.floating)


def _tensor(v):
    return v if isinstance(v, Tensor) else Tensor(np.asarray(v))


def _reshape(v, shape):
    shape = tuple(int(s) for s in shape)
    return v.reshape(shape) if isinstance(v, Tensor) else np.asarray(v).reshape(shape)


def _transpose(v, perm):
    return v.transpose(tuple(perm)) if isinstance(v, Tensor) else np.transpose(v, perm)


def _axis(node, axis, ndim, what="axis"):
    if not -ndim <= axis < max(ndim, 1):
        raise OnnxRuntimeError(f"{node.where}: {what}={axis} is out of range for a {ndim}-D input")
    return axis % max(ndim, 1)


def _fail(node, msg):
    return OnnxRuntimeError(f"{node.where}: {msg}")


# ----- convolution ---------------------------------------------------------------------------
AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _window_attrs(node, a, with_kernel=True):
    """kernel_shape, strides, dilations, pads, auto_pad with ONNX defaults, checked for rank."""
    auto_pad = a.str("auto_pad", "NOTSET", AUTO_PAD)
    k = a.ints("kernel_shape")
    s, d, p = a.ints("strides"), a.ints("dilations"), a.ints("pads")
    ranks = {len(v) for v in (k, s, d) if v is not None} | ({len(p) // 2} if p is not None else set())
    if len(ranks) > 1:
        raise node.error(f"kernel_shape/strides/dilations/pads disagree on the number of spatial axes")
    rank = ranks.pop() if ranks else None
    if rank is not None and rank not in (1, 2):
        raise node.error(f"{rank}-D windows are not supported (1-D and 2-D are)")
    if p is not None and len(p) % 2:
        raise node.error(f"pads={p} must have an even length (begins then ends)")
    for name, v, lo in (("kernel_shape", k, 1), ("strides", s, 1), ("dilations", d, 1)):
        if v is not None and min(v, default=1) < lo:
            raise node.error(f"{name}={v} must be >= {lo}")
    if p is not None and auto_pad != "NOTSET" and any(p):
        raise node.error(f"pads={p} cannot be combined with auto_pad={auto_pad}")
    if with_kernel and k is None:
        raise node.error("attribute kernel_shape is required")
    # Without kernel_shape the weight's (or input's) rank, when the file declares it, decides.
    known = [r - 2 for r in node.ranks[:2] if r is not None]
    if rank is None and known and known[-1] not in (1, 2):
        raise node.error(f"{known[-1]}-D windows are not supported (1-D and 2-D are)")
    return auto_pad, k, s, d, p


def _resolve_pads(auto_pad, sizes, k, s, d, p):
    """(lo, hi) pads per spatial axis: explicit, or SAME (output ceil(in/stride)) / VALID."""
    n = len(sizes)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        lo, hi = [], []
        for i in range(n):
            out = -(-sizes[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - sizes[i], 0)
            small, big = total // 2, total - total // 2
            lo.append(small if auto_pad == "SAME_UPPER" else big)
            hi.append(big if auto_pad == "SAME_UPPER" else small)
        return lo, hi
    if auto_pad == "VALID" or p is None:
        return [0] * n, [0] * n
    return list(p[:n]), list(p[n:])


def _lift_1d(x, n_spatial):
    """View a 1-D signal (N, C, L) as an image (N, C, 1, L)."""
    return _reshape(x, x.shape[:2] + (1,) + x.shape[2:]) if n_spatial == 1 else x


def _pair_lists(n_spatial, *lists):
    """Per-axis lists for the 2-D engine: a 1-D op gets a neutral leading axis."""
    return [([neutral] + list(v)) if n_spatial == 1 else list(v) for v, neutral in lists]


@register("Conv")
def conv(node, a):
    auto_pad, k, s, d, p = _window_attrs(node, a, with_kernel=False)
    group = a.int("group", 1)
    if group < 1:
        raise node.error(f"group={group} must be >= 1")

    def run(v, training):
        x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
        xa, wa = _data(x), _data(w)
        n = wa.ndim - 2
        if n not in (1, 2) or xa.ndim != n + 2:
            raise _fail(node, f"expected (N, C, *) input and (O, C/group, *) weight with 1 or 2 spatial "
                              f"axes, got input {xa.shape} and weight {wa.shape}")
        kk = list(wa.shape[2:])
        if k is not None and list(k) != kk:
            raise _fail(node, f"kernel_shape={k} does not match the weight's shape {wa.shape}")
        if xa.shape[1] != wa.shape[1] * group or wa.shape[0] % group:
            raise _fail(node, f"input has {xa.shape[1]} channels but weight {wa.shape} with group={group} "
                              f"expects {wa.shape[1] * group}")
        if xa.dtype != wa.dtype:
            raise _fail(node, f"input dtype {xa.dtype} differs from weight dtype {wa.dtype}")
        ss, dd = s or [1] * n, d or [1] * n
        lo, hi = _resolve_pads(auto_pad, list(xa.shape[2:]), kk, ss, dd, p)
        sizes = [xa.shape[2 + i] + lo[i] + hi[i] - (kk[i] - 1) * dd[i] - 1 for i in range(n)]
        if min(sizes) < 0:
            raise _fail(node, f"the (dilated) kernel {kk} is larger than the padded input {xa.shape[2:]}")
        ss, dd, lo, hi = _pair_lists(n, (ss, 1), (dd, 1), (lo, 0), (hi, 0))
        y = Conv2d.apply(_lift_1d(x, n), _lift_1d(w, n), b, stride=tuple(ss),
                         padding=((lo[0], hi[0]), (lo[1], hi[1])), dilation=tuple(dd), groups=group)
        return [_reshape(y, y.shape[:2] + y.shape[3:]) if n == 1 else y]

    return run


@register("ConvTranspose")
def conv_transpose(node, a):
    auto_pad, k, s, d, p = _window_attrs(node, a, with_kernel=False)
    group = a.int("group", 1)
    out_pad, out_shape = a.ints("output_padding"), a.ints("output_shape")

    def run(v, training):
        x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
        xa, wa = _data(x), _data(w)
        n = wa.ndim - 2
        if n not in (1, 2) or xa.ndim != n + 2:
            raise _fail(node, f"expected 1 or 2 spatial axes, got input {xa.shape} and weight {wa.shape}")
        if xa.shape[1] != wa.shape[0] or wa.shape[0] % group:
            raise _fail(node, f"input has {xa.shape[1]} channels but weight {wa.shape} expects {wa.shape[0]}")
        kk, ins = list(wa.shape[2:]), list(xa.shape[2:])
        ss, dd = s or [1] * n, d or [1] * n
        op = out_pad or [0] * n
        ek = [(kk[i] - 1) * dd[i] + 1 for i in range(n)]
        full = [ss[i] * (ins[i] - 1) + op[i] + ek[i] for i in range(n)]  # output before cropping
        if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = list(out_shape[-n:]) if out_shape is not None else [ins[i] * ss[i] for i in range(n)]
            # A negative total pads the far end with zeros (the spec's formula, as onnxruntime).
            total = [full[i] - target[i] for i in range(n)]
            upper = auto_pad == "SAME_UPPER"
            lo = [t // 2 if upper else t - t // 2 for t in total]
            hi = [t - t // 2 if upper else t // 2 for t in total]
        elif auto_pad == "VALID" or p is None:
            lo, hi = [0] * n, [0] * n
        else:
            lo, hi = list(p[:n]), list(p[n:])
        out = [full[i] - lo[i] - hi[i] for i in range(n)]
        if min(out) < 1:
            raise _fail(node, f"computed output size {out} is too small")
        check_alloc(node.where, (xa.shape[0], wa.shape[1] * group, *out), xa.dtype.itemsize)
        # The conv this transposes maps ``out`` back to ``ins`` with pads (lo, hi - output_padding).
        hi_c = [hi[i] - op[i] for i in range(n)]
        ss, dd, lo, hi_c, out = _pair_lists(n, (ss, 1), (dd, 1), (lo, 0), (hi_c, 0), (out, 1))
        y = ConvTranspose2d.apply(_lift_1d(x, n), _lift_1d(w, n), b, stride=tuple(ss),
                                  padding=((lo[0], hi_c[0]), (lo[1], hi_c[1])), dilation=tuple(dd),
                                  groups=group, out_hw=tuple(out))
        return [_reshape(y, y.shape[:2] + y.shape[3:]) if n == 1 else y]

    return run


# ----- pooling -------------------------------------------------------------------------------
def _pool_geometry(node, xa, auto_pad, k, s, d, p, ceil_mode):
    """Per-axis (kernel, stride, dilation, lo, hi, out) as ONNX computes them."""
    n = len(k)
    if xa.ndim != n + 2:
        raise _fail(node, f"kernel_shape={k} needs a {n + 2}-D input, got shape {xa.shape}")
    ss, dd, ins = s or [1] * n, d or [1] * n, list(xa.shape[2:])
    lo, hi = _resolve_pads(auto_pad, ins, k, ss, dd, p)
    out = []
    for i in range(n):
        span = ins[i] + lo[i] + hi[i] - (k[i] - 1) * dd[i] - 1
        o = (-(-span // ss[i]) if ceil_mode else span // ss[i]) + 1
        if ceil_mode and (o - 1) * ss[i] >= ins[i] + lo[i]:  # last window must start inside
            o -= 1
        out.append(o)
    if min(out) < 1:
        raise _fail(node, f"the (dilated) kernel {k} is larger than the padded input {ins}")
    return ss, dd, lo, hi, out


def _pad_to_windows(x, lo, need, value):
    """Pad (or crop) the spatial axes to exactly ``need`` pixels starting ``lo`` before the input."""
    pads = []
    for i in reversed(range(len(lo))):  # F.pad order: last axis first
        size = x.shape[2 + i]
        pads += [lo[i], need[i] - size - lo[i]]
    return _PadFn.apply(x, pad=tuple(pads), mode="constant", value=value)


@register("MaxPool")
def max_pool(node, a):
    auto_pad, k, s, d, p = _window_attrs(node, a)
    ceil_mode = bool(a.int("ceil_mode", 0))
    order = a.int("storage_order", 0)
    want_indices = len(node.outputs) > 1 and node.outputs[1] != ""

    def run(v, training):
        x = v[0]
        xa = _data(x)
        integer = not np.issubdtype(xa.dtype, np.floating)
        if integer:  # uint8/int8 pooling: exact in float64, no gradient to keep
            x = Tensor(xa.astype(np.float64))
        ss, dd, lo, hi, out = _pool_geometry(node, xa, auto_pad, k, s, d, p, ceil_mode)
        n = len(k)
        x2 = _lift_1d(_tensor(x), n)
        kk, ss2, dd2, lo2, hi2, out2 = _pair_lists(n, (k, 1), (ss, 1), (dd, 1), (lo, 0), (hi, 0), (out, 1))
        fast = lo2 == hi2 and all(lo2[i] <= kk[i] // 2 for i in range(2))
        if fast:  # PyTorch's symmetric padding and ceil rule are ONNX's
            res = F.max_pool2d(x2, tuple(kk), tuple(ss2), tuple(lo2), tuple(dd2), ceil_mode, want_indices)
            off = (0, 0)
        else:  # asymmetric or large pads: pad with -inf to exactly the windows' extent
            need = [(out2[i] - 1) * ss2[i] + (kk[i] - 1) * dd2[i] + 1 for i in range(2)]
            xp_ = _pad_to_windows(x2, lo2, need, -np.inf)
            res = F.max_pool2d(xp_, tuple(kk), tuple(ss2), 0, tuple(dd2), False, want_indices)
            off = tuple(lo2)
        y, idx = res if want_indices else (res, None)
        y = _reshape(y, y.shape[:2] + y.shape[3:]) if n == 1 else y
        if integer:
            y = y.data.astype(xa.dtype)
        if not want_indices:
            return [y]
        # ONNX indices are flat over the whole (N, C, H, W) tensor; storage_order=1 is column-major.
        H, W = x2.shape[2:]
        Wp = W if fast else need[1]
        ii = idx.data
        h, w = ii // Wp - off[0], ii % Wp - off[1]
        N, C = xa.shape[:2]
        base = (np.arange(N)[:, None, None, None] * C + np.arange(C)[None, :, None, None]) * H * W
        flat = base + (w * H + h if order == 1 else h * W + w)
        return [y, _reshape(flat.astype(np.int64), y.shape)]

    return run


def _avg_counts(size, out, k, s, d, lo, hi, include_pad):
    """Taps per window that count towards ONNX's average along one axis."""
    pos = np.arange(out)[:, None] * s - lo + np.arange(k)[None, :] * d
    inside = (pos >= -lo) & (pos < size + hi) if include_pad else (pos >= 0) & (pos < size)
    return inside.sum(axis=1)


@register("AveragePool")
def avg_pool(node, a):
    auto_pad, k, s, d, p = _window_attrs(node, a)
    ceil_mode = bool(a.int("ceil_mode", 0))
    include_pad = bool(a.int("count_include_pad", 0))

    def run(v, training):
        x = _tensor(v[0])
        xa = x.data
        ss, dd, lo, hi, out = _pool_geometry(node, xa, auto_pad, k, s, d, p, ceil_mode)
        n = len(k)
        x2 = _lift_1d(x, n)
        kk, ss2, dd2, lo2, hi2, out2 = _pair_lists(n, (k, 1), (ss, 1), (dd, 1), (lo, 0), (hi, 0), (out, 1))
        if lo2 == hi2 and dd2 == [1, 1] and all(lo2[i] <= kk[i] // 2 for i in range(2)):
            y = F.avg_pool2d(x2, tuple(kk), tuple(ss2), tuple(lo2), ceil_mode, include_pad)
        else:
            # Window sums by a depthwise convolution of ones over the zero-padded input, then
            # ONNX's divisor: taps inside the input (or inside input + explicit pads).
            need = [(out2[i] - 1) * ss2[i] + (kk[i] - 1) * dd2[i] + 1 for i in range(2)]
            xz = _pad_to_windows(x2, lo2, need, 0)
            C = xa.shape[1]
            ones = np.ones((C, 1, kk[0], kk[1]), dtype=xa.dtype)
            sums = Conv2d.apply(xz, ones, None, stride=tuple(ss2), padding=((0, 0), (0, 0)),
                                dilation=tuple(dd2), groups=C)
            cnt = [_avg_counts(x2.shape[2 + i], out2[i], kk[i], ss2[i], dd2[i], lo2[i], hi2[i], include_pad)
                   for i in range(2)]
            div = np.maximum(cnt[0][:, None] * cnt[1][None, :], 1).astype(xa.dtype)
            y = sums / div
        return [_reshape(y, y.shape[:2] + y.shape[3:]) if n == 1 else y]

    return run


@register("GlobalAveragePool", "GlobalMaxPool")
def global_pool(node, a):
    is_max = node.op == "GlobalMaxPool"

    def run(v, training):
        x = _tensor(v[0])
        axes = tuple(range(2, x.ndim))
        return [x.max(axis=axes, keepdims=True) if is_max else x.mean(axis=axes, keepdims=True)]

    return run


# ----- normalization -------------------------------------------------------------------------
@register("BatchNormalization")
def batch_norm(node, a):
    eps = a.float("epsilon", 1e-5)
    momentum = a.float("momentum", 0.9)
    train_attr = bool(a.int("training_mode", 0))
    if node.opset < 9 and a.int("spatial", 1) != 1:
        raise node.error("spatial=0 (per-activation statistics) is not supported")
    if node.opset < 7:
        a.ignore("is_test", "consumed_inputs")
    extra = [o for o in node.outputs[1:] if o]
    if extra and not train_attr:
        raise node.error("outputs besides Y need training_mode=1")

    def run(v, training):
        x, scale, bias, mean, var = v[:5]
        xa = _data(x)
        if xa.ndim < 2:
            raise _fail(node, f"expected (N, C, *) input, got shape {xa.shape}")
        if train_attr:
            # ONNX training mode: batch statistics; running = mean_in*momentum + batch*(1-momentum)
            # with the biased batch variance (ONNX's convention, not PyTorch's).
            axes = (0,) + tuple(range(2, xa.ndim))
            y = F.batch_norm(x, None, None, scale, bias, training=True, eps=eps)
            bm, bv = xa.mean(axis=axes), xa.var(axis=axes)
            rm = _data(mean) * momentum + bm * (1 - momentum)
            rv = _data(var) * momentum + bv * (1 - momentum)
            return [y, rm.astype(xa.dtype), rv.astype(xa.dtype)][: 1 + len(node.outputs[1:])]
        if training and node.stats_are_buffers:
            # Fine-tuning (module.train()): PyTorch's behaviour, updating the running buffers.
            return [F.batch_norm(x, _data(mean), _data(var), scale, bias, training=True,
                                 momentum=1 - momentum, eps=eps)]
        return [F.batch_norm(x, _data(mean), _data(var), scale, bias, training=False, eps=eps)]

    return run


@register("LRN")
def lrn(node, a):
    size = a.int("size", 0)
    if size < 1:
        raise node.error(f"attribute size={size} must be a positive int")
    alpha, beta, bias = a.float("alpha", 1e-4), a.float("beta", 0.75), a.float("bias", 1.0)

    def run(v, training):
        x = _tensor(v[0])
        if size % 2:
            return [F.local_response_norm(x, size, alpha, beta, bias)]
        # Even sizes: ONNX's window is c-(size-1)//2 .. c+size//2, PyTorch's the mirror image;
        # reversing the channel order swaps the two.
        rev = (slice(None), slice(None, None, -1))
        return [F.local_response_norm(x[rev], size, alpha, beta, bias)[rev]]

    return run


# ----- activations ---------------------------------------------------------------------------
class _Clip(Function):
    """min(max(x, lo), hi) (hi wins where lo > hi, as np.clip); gradient where x is inside."""

    def forward(self, x, lo, hi):
        xp = get_array_module(x)
        self.keep = xp.ones(x.shape, dtype=bool)
        y = x
        if lo is not None:
            y = xp.maximum(y, xp.asarray(lo, dtype=x.dtype))
            self.keep &= x >= lo
        if hi is not None:
            y = xp.minimum(y, xp.asarray(hi, dtype=x.dtype))
            self.keep &= x <= hi
        return y

    def backward(self, g):
        return (g * self.keep, None, None)


def _clip(x, lo, hi):
    if isinstance(x, Tensor):
        return _Clip.apply(x, lo, hi)
    xa = np.asarray(x)
    y = xa if lo is None else np.maximum(xa, np.asarray(lo, dtype=xa.dtype))
    return y if hi is None else np.minimum(y, np.asarray(hi, dtype=xa.dtype))


@register("Clip")
def clip(node, a):
    if node.opset < 11:
        lo, hi = a.get("min"), a.get("max")
        return lambda v, training: [_clip(v[0], lo, hi)]

    def run(v, training):
        lo = None if len(v) < 2 or v[1] is None else _data(v[1]).reshape(())
        hi = None if len(v) < 3 or v[2] is None else _data(v[2]).reshape(())
        return [_clip(v[0], lo, hi)]

    return run


class _PRelu(Function):
    """x if x >= 0 else slope * x, slope broadcasting to x (ONNX's unidirectional rule)."""

    def forward(self, x, slope):
        xp = get_array_module(x)
        self.x, self.slope, self.neg = x, slope, x < 0
        return xp.where(self.neg, slope * x, x).astype(x.dtype, copy=False)

    def backward(self, g):
        xp = get_array_module(g)
        gx = xp.where(self.neg, g * self.slope, g) if self.needs_input_grad[0] else None
        gs = None
        if self.needs_input_grad[1]:
            gs = core.unbroadcast(xp.where(self.neg, g * self.x, 0), self.slope.shape)
        return gx, gs


def _unary(fn):
    return lambda node, a: (lambda v, training: [fn(_tensor(v[0]))])


register("Relu")(_unary(F.relu))
register("Sigmoid")(_unary(F.sigmoid))
register("Tanh")(_unary(F.tanh))


@register("LeakyRelu")
def leaky_relu(node, a):
    alpha = a.float("alpha", 0.01)
    return lambda v, training: [F.leaky_relu(_tensor(v[0]), alpha)]


@register("Elu")
def elu(node, a):
    alpha = a.float("alpha", 1.0)
    return lambda v, training: [F.elu(_tensor(v[0]), alpha)]


@register("PRelu")
def prelu(node, a):
    def run(v, training):
        x, slope = _tensor(v[0]), v[1]
        sa = _data(slope)
        if node.opset < 7 and sa.ndim == 1 and x.ndim > 2:  # PRelu-6: one slope per channel
            slope = _reshape(slope, sa.shape + (1,) * (x.ndim - 2))
        try:
            np.broadcast_shapes(_data(slope).shape, x.shape)
        except ValueError:
            raise _fail(node, f"slope of shape {sa.shape} does not broadcast to input {x.shape}") from None
        return [_PRelu.apply(x, slope)]

    return run


@register("HardSigmoid")
def hard_sigmoid(node, a):
    alpha, beta = a.float("alpha", 0.2), a.float("beta", 0.5)
    return lambda v, training: [_clip(_tensor(v[0]) * alpha + beta, 0.0, 1.0)]


@register("HardSwish")
def hard_swish(node, a):
    def run(v, training):
        x = _tensor(v[0])
        return [x * _clip(x * (1 / 6) + 0.5, 0.0, 1.0)]

    return run


@register("Softmax", "LogSoftmax")
def softmax(node, a):
    fn = F.softmax if node.op == "Softmax" else F.log_softmax
    new = node.opset >= 13
    axis = a.int("axis", -1 if new else 1)

    def run(v, training):
        x = _tensor(v[0])
        ax = _axis(node, axis, x.ndim)
        if new:
            return [fn(x, dim=ax)]
        # Before opset 13 the input is coerced to 2-D (dims before axis, dims from axis on).
        lead = math.prod(x.shape[:ax])
        y = fn(x.reshape(lead, -1), dim=1)
        return [y.reshape(x.shape)]

    return run


@register("Dropout")
def dropout(node, a):
    a.ignore("seed")
    if node.opset < 7:
        a.ignore("is_test")
    ratio_attr = a.float("ratio", 0.5) if node.opset < 12 else None

    def run(v, training):
        x = v[0]
        ratio = ratio_attr if ratio_attr is not None else (
            0.5 if len(v) < 2 or v[1] is None else float(_data(v[1])))
        if len(v) > 2 and v[2] is not None:
            training = bool(_data(v[2]))
        if not 0 <= ratio < 1:
            raise _fail(node, f"ratio={ratio} must be in [0, 1)")
        xa = _data(x)
        if not training or ratio == 0:
            return [x, np.ones(xa.shape, dtype=bool)]
        keep = default_generator().random(xa.shape) >= ratio
        scale = (keep / (1 - ratio)).astype(xa.dtype)
        return [x * scale, keep]

    return run


# ----- linear algebra and elementwise arithmetic ---------------------------------------------
@register("Gemm")
def gemm(node, a):
    alpha, beta = a.float("alpha", 1.0), a.float("beta", 1.0)
    ta, tb = a.int("transA", 0), a.int("transB", 0)
    if node.opset < 7:
        a.ignore("broadcast")

    def run(v, training):
        A, B = v[0], v[1]
        C = v[2] if len(v) > 2 else None
        if _data(A).ndim != 2 or _data(B).ndim != 2:
            raise _fail(node, f"A and B must be 2-D, got {_data(A).shape} and {_data(B).shape}")
        if not ta and tb and alpha == 1 and beta == 1 and _is_float(A) and (
                C is None or _data(C).shape == (_data(B).shape[0],)):
            return [F.linear(_tensor(A), B, C)]  # the common fully connected layer: one GEMM
        A = _transpose(A, (1, 0)) if ta else A
        B = _transpose(B, (1, 0)) if tb else B
        if _data(A).shape[1] != _data(B).shape[0]:
            raise _fail(node, f"inner dimensions differ: A' {_data(A).shape} @ B' {_data(B).shape}")
        y = _tensor(A) @ B
        y = y * alpha if alpha != 1 else y
        if C is not None:
            y = y + (C * beta if beta != 1 else C)
        return [y]

    return run


@register("MatMul")
def matmul(node, a):
    def run(v, training):
        A, B = v
        if not isinstance(A, Tensor) and not isinstance(B, Tensor):
            return [np.matmul(A, B)]
        return [_tensor(A) @ B]

    return run


def _int_div(x, y):
    """ONNX integer division truncates toward zero (NumPy's // floors)."""
    q = x // y
    if np.issubdtype(q.dtype, np.signedinteger):
        q = q + ((x % y != 0) & ((x < 0) != (y < 0)))
    return q.astype(np.result_type(x, y))


@register("Add", "Sub", "Mul", "Div")
def arithmetic(node, a):
    legacy_axis = None
    if node.opset < 7:  # opset 6: B broadcasts into A starting at `axis` (suffix-aligned if absent)
        a.ignore("consumed_inputs")
        if a.int("broadcast", 0):
            legacy_axis = a.get("axis")
    op = node.op

    def run(v, training):
        x, y = v
        if legacy_axis is not None:
            nd, yd = _data(x).ndim, _data(y).ndim
            ax = int(legacy_axis) % max(nd, 1)
            y = _reshape(y, (1,) * ax + _data(y).shape + (1,) * (nd - ax - yd))
        if not isinstance(x, Tensor) and not isinstance(y, Tensor):
            x, y = np.asarray(x), np.asarray(y)
            if op == "Div" and not np.issubdtype(np.result_type(x, y), np.floating):
                return [_int_div(x, y)]
            return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide}[op](x, y)]
        x, y = (x, y) if isinstance(x, Tensor) else (_tensor(x), y)
        try:
            np.broadcast_shapes(_data(x).shape, _data(y).shape)
        except ValueError:
            raise _fail(node, f"shapes {_data(x).shape} and {_data(y).shape} do not broadcast") from None
        return [{"Add": lambda: x + y, "Sub": lambda: x - y, "Mul": lambda: x * y, "Div": lambda: x / y}[op]()]

    return run


# ----- shape and layout ----------------------------------------------------------------------
@register("Concat")
def concat(node, a):
    axis = a.int("axis", 1 if node.opset < 4 else 0)

    def run(v, training):
        parts = list(v)
        nd = _data(v[0]).ndim
        ax = _axis(node, axis, nd)
        if not any(isinstance(p, Tensor) for p in parts):
            return [np.concatenate([np.asarray(p) for p in parts], axis=ax)]
        return [F.cat([_tensor(p) for p in parts], dim=ax)]

    return run


@register("Flatten")
def flatten(node, a):
    axis = a.int("axis", 1)

    def run(v, training):
        x = v[0]
        shape = _data(x).shape
        ax = axis + len(shape) if axis < 0 else axis
        if not 0 <= ax <= len(shape):
            raise _fail(node, f"axis={axis} is out of range for a {len(shape)}-D input")
        return [_reshape(x, (math.prod(shape[:ax]), math.prod(shape[ax:])))]

    return run


@register("Reshape")
def reshape(node, a):
    allowzero = a.int("allowzero", 0)
    if node.opset < 5:
        raise node.error("the shape attribute of Reshape-1 is not supported (opset >= 5 is)")

    def run(v, training):
        x, target = v[0], _ints(v[1])
        shape = _data(x).shape
        out = [shape[i] if (t == 0 and not allowzero) else t for i, t in enumerate(target)]
        if out.count(-1) > 1:
            raise _fail(node, f"shape {target} has more than one -1")
        if -1 in out:
            known = math.prod(d for d in out if d != -1)
            total = math.prod(shape)
            if known == 0 or total % known:
                raise _fail(node, f"cannot reshape {shape} to {target}")
            out[out.index(-1)] = total // known
        if math.prod(out) != math.prod(shape):
            raise _fail(node, f"cannot reshape {shape} ({math.prod(shape)} elements) to {target}")
        return [_reshape(x, out)]

    return run


@register("Transpose")
def transpose(node, a):
    perm = a.ints("perm")

    def run(v, training):
        x = v[0]
        nd = _data(x).ndim
        p = list(reversed(range(nd))) if perm is None else perm
        if sorted(p) != list(range(nd)):
            raise _fail(node, f"perm={p} is not a permutation of the {nd} axes")
        return [_transpose(x, p)]

    return run


def _axes_input(v, position):
    """Axes from an optional input (opset >= 13), None when it is omitted."""
    if len(v) > position and v[position] is not None:
        return _ints(v[position])
    return None


@register("Squeeze", "Unsqueeze")
def squeeze(node, a):
    old = node.opset < 13
    attr_axes = a.ints("axes") if old else None
    if node.op == "Unsqueeze" and old and attr_axes is None:
        raise node.error("attribute axes is required")

    def run(v, training):
        x = v[0]
        shape = list(_data(x).shape)
        axes = attr_axes if old else _axes_input(v, 1)
        if node.op == "Squeeze":
            if axes is None:
                out = [d for d in shape if d != 1]
            else:
                ax = {_axis(node, i, len(shape), "axes") for i in axes}
                bad = [i for i in ax if shape[i] != 1]
                if bad:
                    raise _fail(node, f"cannot squeeze axes {bad} of shape {tuple(shape)} (size != 1)")
                out = [d for i, d in enumerate(shape) if i not in ax]
        else:
            if axes is None:
                raise _fail(node, "input axes is required")
            nd = len(shape) + len(axes)
            ax = sorted(_axis(node, i, nd, "axes") for i in axes)
            if len(set(ax)) != len(ax):
                raise _fail(node, f"axes {axes} repeat an axis")
            out, it = [], iter(shape)
            for i in range(nd):
                out.append(1 if i in ax else next(it))
        return [_reshape(x, out)]

    return run


@register("Pad")
def pad(node, a):
    mode = a.str("mode", "constant", ("constant", "reflect", "edge", "wrap"))
    if node.opset < 19 and mode == "wrap":
        raise node.error("mode 'wrap' needs opset >= 19")
    if node.opset < 11:
        pads_attr, value_attr = a.ints("pads"), a.float("value", 0.0)
        if node.opset < 2:
            raise node.error("Pad-1 (paddings attribute) is not supported")
    mode_fn = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]

    def run(v, training):
        x = v[0]
        xa = _data(x)
        nd = xa.ndim
        if node.opset < 11:
            pads, value = pads_attr, value_attr
            axes = list(range(nd))
        else:
            pads = _ints(v[1])
            value = 0 if len(v) < 3 or v[2] is None or _data(v[2]).size == 0 else _data(v[2]).reshape(-1)[0]
            axes = list(range(nd)) if len(v) < 4 or v[3] is None else [_axis(node, i, nd, "axes") for i in _ints(v[3])]
        if len(pads) != 2 * len(axes):
            raise _fail(node, f"pads has {len(pads)} values, expected {2 * len(axes)} for axes {axes}")
        full = [(0, 0)] * nd
        for j, ax in enumerate(axes):
            full[ax] = (pads[j], pads[j + len(axes)])
        out_shape = [xa.shape[i] + lo + hi for i, (lo, hi) in enumerate(full)]
        check_alloc(node.where, out_shape, xa.dtype.itemsize)
        for i, (lo, hi) in enumerate(full):
            n = xa.shape[i]
            if mode == "reflect" and max(lo, hi) >= n and (lo or hi):
                raise _fail(node, f"reflect pads ({lo}, {hi}) must be smaller than axis {i}'s size {n}")
            if mode in ("edge", "wrap") and n == 0 and (lo or hi):
                raise _fail(node, f"cannot {mode}-pad the empty axis {i}")
            if mode == "wrap" and max(lo, hi) > n:
                raise _fail(node, f"wrap pads ({lo}, {hi}) exceed axis {i}'s size {n}")
        torch_pad = []
        for lo, hi in reversed(full):  # F.pad order: last axis first
            torch_pad += [lo, hi]
        y = _PadFn.apply(x, pad=tuple(torch_pad), mode=mode_fn,
                         value=xa.dtype.type(value) if mode == "constant" else None)
        return [y if isinstance(x, Tensor) else y.data]

    return run


# ----- resize --------------------------------------------------------------------------------
class _AxisTaps(Function):
    """y[.., o, ..] = sum_t w[o, t] * x[.., idx[o, t], ..] along one axis (separable resizing)."""

    def forward(self, x, axis, idx, w):
        xp = get_array_module(x)
        self.axis, self.idx, self.w, self.n = axis, idx, w, x.shape[axis]
        shape = [1] * x.ndim
        shape[axis] = -1
        y = None
        for t in range(idx.shape[1]):
            part = xp.take(x, xp.asarray(idx[:, t]), axis=axis)
            if w is not None:
                part = part * xp.asarray(w[:, t]).reshape(shape)
            y = part if y is None else y + part
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        xp = get_array_module(g)
        gm = xp.moveaxis(g, self.axis, -1)
        out = xp.zeros(gm.shape[:-1] + (self.n,), dtype=g.dtype)
        for t in range(self.idx.shape[1]):
            gt = gm if self.w is None else gm * xp.asarray(self.w[:, t], dtype=g.dtype)
            xp.add.at(out, (Ellipsis, xp.asarray(self.idx[:, t])), gt)
        return (xp.moveaxis(out, -1, self.axis),)


def _source_coords(mode, n_in, n_out, scale, roi):
    """ONNX's coordinate_transformation_mode: source coordinate of each output index."""
    y = np.arange(n_out, dtype=np.float64)
    length = scale * n_in  # the real-valued output length the spec's formulas use
    if mode == "align_corners":
        return np.zeros(n_out) if length == 1 else y * (n_in - 1) / (length - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if length == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / length)
        return offset + (y + 0.5) / scale - 0.5
    start, end = roi  # tf_crop_and_resize
    if length == 1:
        return np.full(n_out, (end - start) * (n_in - 1) / 2 + start * (n_in - 1))
    return y * (end - start) * (n_in - 1) / (length - 1) + start * (n_in - 1)


def _cubic_weights(r, A):
    """Keys' cubic convolution weights of the taps at offsets -1, 0, 1, 2 from floor(x)."""
    def k(t):
        t = np.abs(t)
        return np.where(t <= 1, ((A + 2) * t - (A + 3)) * t * t + 1,
                        np.where(t < 2, ((A * t - 5 * A) * t + 8 * A) * t - 4 * A, 0.0))
    return np.stack([k(r + 1), k(r), k(1 - r), k(2 - r)], axis=1)


def _taps(x, mode, nearest_mode, n_in, cubic_a, exclude_outside):
    """(idx (n_out, T), weights (n_out, T) or None) for source coordinates x along one axis."""
    if mode == "nearest":
        f = np.floor(x)
        frac = x - f
        if nearest_mode == "floor":
            i = f
        elif nearest_mode == "ceil":
            i = np.ceil(x)
        elif nearest_mode == "round_prefer_floor":
            i = np.where(frac <= 0.5, f, f + 1)
        else:  # round_prefer_ceil
            i = np.where(frac < 0.5, f, f + 1)
        return np.clip(i, 0, n_in - 1).astype(np.int64)[:, None], None
    f = np.floor(x)
    r = x - f
    if mode == "linear":
        idx = np.stack([f, f + 1], axis=1).astype(np.int64)
        w = np.stack([1 - r, r], axis=1)
    else:  # cubic
        idx = (f[:, None] + np.arange(-1, 3)[None, :]).astype(np.int64)
        w = _cubic_weights(r, cubic_a)
        if exclude_outside:
            w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
            w = w / np.where(w.sum(axis=1, keepdims=True) == 0, 1, w.sum(axis=1, keepdims=True))
    return np.clip(idx, 0, n_in - 1), w


@register("Resize", "Upsample")
def resize(node, a):
    legacy = node.op == "Upsample" or node.opset < 11  # Upsample and Resize-10: asymmetric
    modes = ("nearest", "linear", "bilinear") if node.op == "Upsample" else ("nearest", "linear", "cubic")
    mode = a.str("mode", "nearest", modes)
    mode = "linear" if mode == "bilinear" else mode
    if legacy:
        coord, nearest_mode, cubic_a, exclude, extrap = "asymmetric", "floor", -0.75, False, 0.0
        scales_attr = [float(s) for s in a.get("scales")] if node.opset < 9 and node.op == "Upsample" else None
        if node.opset < 9 and node.op == "Upsample" and scales_attr is None:
            raise node.error("attribute scales is required")
        axes_attr, policy = None, "stretch"
    else:
        coord = a.str("coordinate_transformation_mode", "half_pixel",
                      ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                       "asymmetric", "tf_crop_and_resize"))
        nearest_mode = a.str("nearest_mode", "round_prefer_floor",
                             ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"))
        cubic_a = a.float("cubic_coeff_a", -0.75)
        exclude = bool(a.int("exclude_outside", 0))
        extrap = a.float("extrapolation_value", 0.0)
        if a.int("antialias", 0):
            raise node.error("antialias=1 is not supported")
        axes_attr = a.ints("axes")
        policy = a.str("keep_aspect_ratio_policy", "stretch", ("stretch", "not_larger", "not_smaller"))
        scales_attr = None

    def run(v, training):
        x = v[0]
        xa = _data(x)
        nd = xa.ndim
        axes = list(range(nd)) if axes_attr is None else [_axis(node, i, nd, "axes") for i in axes_attr]
        if legacy:
            scales = scales_attr if scales_attr is not None else [float(s) for s in _data(v[1]).reshape(-1)]
            sizes, roi = None, None
        else:
            roi = None if len(v) < 2 or v[1] is None or _data(v[1]).size == 0 else _data(v[1]).astype(np.float64)
            scales = None if len(v) < 3 or v[2] is None or _data(v[2]).size == 0 else \
                [float(s) for s in _data(v[2]).reshape(-1)]
            sizes = None if len(v) < 4 or v[3] is None or _data(v[3]).size == 0 else _ints(v[3])
            if (scales is None) == (sizes is None):
                raise _fail(node, "exactly one of scales and sizes must be given")
        given = scales if scales is not None else sizes
        if len(given) != len(axes):
            raise _fail(node, f"got {len(given)} scales/sizes for {len(axes)} axes of a {nd}-D input")
        full_scale, out = [1.0] * nd, list(xa.shape)
        if scales is not None:
            if min(scales) <= 0:
                raise _fail(node, f"scales {scales} must be positive")
            for ax, s in zip(axes, scales):
                full_scale[ax], out[ax] = s, int(math.floor(xa.shape[ax] * s))
        else:
            ratios = [sz / xa.shape[ax] for ax, sz in zip(axes, sizes)]
            if policy != "stretch":
                r = min(ratios) if policy == "not_larger" else max(ratios)
                ratios = [r] * len(axes)
                sizes = [int(r * xa.shape[ax] + 0.5) for ax in axes]
            for ax, r, sz in zip(axes, ratios, sizes):
                full_scale[ax], out[ax] = r, sz
        check_alloc(node.where, out, xa.dtype.itemsize)
        if min(out) < 1:
            raise _fail(node, f"output shape {out} has an empty axis")
        if roi is not None and coord == "tf_crop_and_resize":
            if roi.size == 2 * len(axes):
                full_roi = [0.0] * nd + [1.0] * nd
                for j, ax in enumerate(axes):
                    full_roi[ax], full_roi[nd + ax] = roi[j], roi[len(axes) + j]
                roi = np.asarray(full_roi)
        y = _tensor(x) if np.issubdtype(xa.dtype, np.floating) else Tensor(xa.astype(np.float64))
        for ax in range(nd):
            n_in, n_out, s = xa.shape[ax], out[ax], full_scale[ax]
            crop = coord == "tf_crop_and_resize"
            if n_in == n_out and s == 1 and not crop:
                continue
            if crop and roi is None:
                raise _fail(node, "coordinate_transformation_mode tf_crop_and_resize needs roi")
            src = _source_coords(coord, n_in, n_out, s, (roi[ax], roi[nd + ax]) if crop else None)
            idx, w = _taps(src, mode, nearest_mode, n_in, cubic_a, exclude)
            y = _AxisTaps.apply(y, axis=ax, idx=idx, w=None if w is None else w.astype(y.dtype))
            if crop:  # TF CropAndResize: outside the input, the extrapolation value
                outside = (src < 0) | (src > n_in - 1)
                if outside.any():
                    shape = [1] * nd
                    shape[ax] = -1
                    m = outside.reshape(shape)
                    y = y * (~m).astype(y.dtype) + (m * extrap).astype(y.dtype)
        if not np.issubdtype(xa.dtype, np.floating):
            return [y.data.astype(xa.dtype)]
        return [y]

    return run


# ----- constants, shapes, indexing, reductions -----------------------------------------------
@register("Identity")
def identity(node, a):
    return lambda v, training: [v[0]]


@register("Constant")
def constant(node, a):
    keys = [k for k in ("value", "value_float", "value_floats", "value_int", "value_ints") if k in a]
    if len(keys) != 1 or any(k in a for k in ("sparse_value", "value_string", "value_strings")):
        raise node.error("exactly one of value, value_float(s), value_int(s) is supported "
                         f"(got {sorted(a.values)})")
    k = keys[0]
    raw = a.get(k)
    value = {"value": lambda: raw, "value_float": lambda: np.array(raw, np.float32),
             "value_floats": lambda: np.array(raw, np.float32), "value_int": lambda: np.array(raw, np.int64),
             "value_ints": lambda: np.array(raw, np.int64)}[k]()
    node.constant = value
    return lambda v, training: [value]


@register("Shape")
def shape(node, a):
    start, end = a.int("start", 0), a.get("end")

    def run(v, training):
        s = np.array(_data(v[0]).shape, dtype=np.int64)
        n = len(s)
        lo = min(max(start + n if start < 0 else start, 0), n)
        hi = n if end is None else min(max(int(end) + n if int(end) < 0 else int(end), 0), n)
        return [s[lo:hi]]

    return run


@register("Gather")
def gather(node, a):
    axis = a.int("axis", 0)

    def run(v, training):
        x, ind = v[0], np.asarray(_data(v[1]))
        xa = _data(x)
        ax = _axis(node, axis, xa.ndim)
        n = xa.shape[ax]
        if ind.size and (ind.min() < -n or ind.max() >= n):
            raise _fail(node, f"indices out of range [-{n}, {n - 1}] for axis {ax} of shape {xa.shape}")
        ind = np.where(ind < 0, ind + n, ind).astype(np.int64)
        if not isinstance(x, Tensor):
            return [np.take(xa, ind, axis=ax)]
        return [x[(slice(None),) * ax + (ind,)]]

    return run


@register("ReduceMean")
def reduce_mean(node, a):
    keepdims = bool(a.int("keepdims", 1))
    attr_axes = a.ints("axes") if node.opset < 18 else None
    noop = bool(a.int("noop_with_empty_axes", 0)) if node.opset >= 18 else False

    def run(v, training):
        x = v[0]
        xa = _data(x)
        axes = attr_axes if node.opset < 18 else (
            None if len(v) < 2 or v[1] is None or _data(v[1]).size == 0 else _ints(v[1]))
        if axes is None:
            if noop:
                return [x]
            axes = list(range(xa.ndim))
        axes = tuple(sorted({_axis(node, i, xa.ndim, "axes") for i in axes}))
        if not isinstance(x, Tensor):
            return [np.mean(xa, axis=axes, keepdims=keepdims).astype(xa.dtype)]
        return [x.mean(axis=axes, keepdims=keepdims)]

    return run


@register("Slice")
def slice_(node, a):
    old = node.opset < 10  # Slice-1: starts/ends/axes attributes, unit steps
    if old:
        attr = (a.ints("starts"), a.ints("ends"), a.ints("axes"))
        if attr[0] is None or attr[1] is None:
            raise node.error("attributes starts and ends are required")

    def run(v, training):
        x = v[0]
        shape = _data(x).shape
        if old:
            starts, ends, axes = attr
            steps = None
        else:
            starts, ends = _ints(v[1]), _ints(v[2])
            axes = _ints(v[3]) if len(v) > 3 and v[3] is not None else None
            steps = _ints(v[4]) if len(v) > 4 and v[4] is not None else None
        axes = list(range(len(starts))) if axes is None else [_axis(node, i, len(shape), "axes") for i in axes]
        steps = steps or [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise _fail(node, f"starts {starts}, ends {ends}, axes {axes}, steps {steps} must have equal "
                              "lengths and non-zero steps")
        index = [slice(None)] * len(shape)
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            dim = shape[ax]
            st, en = st + dim if st < 0 else st, en + dim if en < 0 else en
            if sp > 0:
                st, en = min(max(st, 0), dim), min(max(en, 0), dim)
            else:  # counting down: -1 means "past the first element", not Python's "last"
                st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            index[ax] = slice(st, None if en < 0 else en, sp)
        index = tuple(index)
        return [x[index] if isinstance(x, Tensor) else np.asarray(x)[index]]

    return run
