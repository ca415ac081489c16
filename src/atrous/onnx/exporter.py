"""Export a model built from atrous modules to ONNX by tracing one forward pass.

Tracing records every ``Function.apply`` the forward makes (the op class, its inputs, its
options and its output), so ops written inside ``forward`` methods -- a residual ``+``,
``F.cat`` of Inception's branches, ``x.flatten(1)`` -- are captured as well as the layers.
Forward hooks on every submodule name the scope each op ran in, so node names read
``layer1.0.conv1/Conv``; parameters and buffers become initializers under their
``state_dict`` names. The model is traced in eval mode (dropout is then the identity and
batch norm uses its running statistics), with fixed shapes taken from ``input_shape``.

Each atrous op maps to the ONNX operators that compute exactly the same numbers: pooling in
ceil mode gets explicit end padding instead of ``ceil_mode`` (whose edge rule differs between
runtimes), adaptive pooling that is not a plain stride becomes two matrix products with the
bin-averaging matrices, and interpolation and non-constant padding become ``Gather`` of the
source indices atrous itself uses.

    >>> from atrous import models
    >>> from atrous.onnx.exporter import export
    >>> export(models.resnet18(), "resnet18.onnx", (1, 3, 224, 224))  # doctest: +SKIP

``onnx`` is imported only when ``export`` runs. Tracing swaps ``Function.apply`` for the
duration of one forward pass, so do not run other atrous work in parallel threads meanwhile.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from ..autograd import Function, no_grad
from ..tensor import Tensor

__all__ = ["export", "MIN_OPSET"]

MIN_OPSET = 13  # Softmax over one axis, ReduceSum/Squeeze/Unsqueeze with axes as inputs
_PROTOBUF_LIMIT = 2**31 - 1


# ----- tracing ------------------------------------------------------------------------------
class _Record:
    __slots__ = ("cls", "inputs", "options", "out", "scope")

    def __init__(self, cls, inputs, options, out, scope):
        self.cls, self.inputs, self.options, self.out, self.scope = cls, inputs, options, out, scope


@contextlib.contextmanager
def _recording(model):
    """Patch ``Function.apply`` to log every call, and hook submodules to know the scope."""
    records, scopes, handles = [], [], []
    original = Function.__dict__["apply"]

    def apply(cls, *inputs, **options):
        out = original.__func__(cls, *inputs, **options)
        records.append(_Record(cls, inputs, options, out, scopes[-1] if scopes else ""))
        return out

    def enter(name):
        return lambda module, args: scopes.append(name)  # append returns None: args unchanged

    def leave(module, args, out):
        scopes.pop()  # returning None keeps the output

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    Function.apply = classmethod(apply)
    try:
        yield records
    finally:
        Function.apply = original
        for h in handles:
            h.remove()


# ----- graph building ------------------------------------------------------------------------
class _Graph:
    """Nodes, initializers and value names, keyed by the identity of traced objects."""

    def __init__(self, onnx, opset):
        self.onnx, self.opset = onnx, opset
        self.nodes, self.initializers = [], {}
        self.names = {}  # id(Tensor or array) -> value name
        self.keep = []  # objects whose id() is a key, kept alive so ids stay unique
        self._counter = 0
        self._node_names = set()

    def fresh(self, stem="t"):
        self._counter += 1
        return f"{stem}{self._counter}"

    def bind(self, obj, name):
        self.names[id(obj)] = name
        self.keep.append(obj)

    def initializer(self, array, name=None):
        """Add ``array`` as an initializer (once per array object) and return its name."""
        key = id(array)
        if key in self.names:
            return self.names[key]
        name = name or self.fresh("const")
        self.initializers[name] = np.asarray(array, order="C")
        self.bind(array, name)
        return name

    def const(self, value, dtype):
        """A fresh constant initializer (scalars and index vectors made up by a handler)."""
        name = self.fresh("const")
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def ints(self, values):
        return self.const(list(values), np.int64)

    def value(self, x, op, scope):
        """Name of an op input: a traced value, a parameter or buffer, or a new constant."""
        if x is None:
            return ""
        if id(x) in self.names:
            return self.names[id(x)]
        if isinstance(x, Tensor) and id(x.data) in self.names:
            return self.names[id(x.data)]
        arr = x.data if isinstance(x, Tensor) else np.asarray(x)
        if arr.dtype == object:
            raise TypeError(f"onnx.export: {op} in '{scope or 'model'}' got a non-array input {type(x).__name__}")
        name = self.initializer(arr)
        self.bind(x, name)
        return name

    def node(self, op_type, inputs, scope, outputs=None, **attrs):
        """Append a node; returns its (first) output name."""
        outputs = outputs or [self.fresh()]
        base = f"{scope or 'model'}/{op_type}"
        name, k = base, 1
        while name in self._node_names:
            k += 1
            name = f"{base}_{k}"
        self._node_names.add(name)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs[0]


# ----- op handlers: (graph, record, input names) -> output name --------------------------------
def _shape(x):
    return tuple(x.data.shape) if isinstance(x, Tensor) else tuple(np.shape(x))


def _dtype(x):
    return x.data.dtype if isinstance(x, Tensor) else np.asarray(x).dtype


def _unsupported(g, r, ins, why=""):
    raise NotImplementedError(
        f"onnx.export: atrous op {r.cls.__module__}.{r.cls.__name__} (in '{r.scope or 'model'}') "
        f"has no ONNX mapping{': ' + why if why else ''}"
    )


def _elementwise(op_type):
    def handler(g, r, ins):
        return g.node(op_type, ins, r.scope)
    return handler


def _conv(g, r, ins):
    o = r.options
    (pt, pb), (pl, pr) = o["padding"]
    w = _shape(r.inputs[1])
    inputs = ins[:3] if ins[2] else ins[:2]
    return g.node("Conv", inputs, r.scope, kernel_shape=list(w[2:]), strides=list(o["stride"]),
                  pads=[pt, pl, pb, pr], dilations=list(o["dilation"]), group=int(o["groups"]))


def _conv_transpose(g, r, ins):
    o = r.options
    (pt, pb), (pl, pr) = o["padding"]
    x, w = _shape(r.inputs[0]), _shape(r.inputs[1])
    pads = ((pt, pb), (pl, pr))
    out_pad = []
    for i in range(2):
        # ONNX: out = s*(in-1) + output_padding + d*(k-1) + 1 - pad_begin - pad_end.
        base = o["stride"][i] * (x[2 + i] - 1) + o["dilation"][i] * (w[2 + i] - 1) + 1 - sum(pads[i])
        out_pad.append(int(o["out_hw"][i]) - base)
    inputs = ins[:3] if ins[2] else ins[:2]
    return g.node("ConvTranspose", inputs, r.scope, kernel_shape=list(w[2:]), strides=list(o["stride"]),
                  pads=[pt, pl, pb, pr], dilations=list(o["dilation"]), group=int(o["groups"]),
                  output_padding=out_pad if any(out_pad) else None)


def _linear(g, r, ins):
    x = _shape(r.inputs[0])
    if len(x) == 2:
        inputs = ins[:3] if ins[2] else ins[:2]
        return g.node("Gemm", inputs, r.scope, transB=1)
    wt = g.node("Transpose", [ins[1]], r.scope, perm=[1, 0])
    y = g.node("MatMul", [ins[0], wt], r.scope)
    return g.node("Add", [y, ins[2]], r.scope) if ins[2] else y


def _end_pads(hw, out_hw, k, s, p, d):
    """Bottom/right padding that makes floor-mode windows give ``out_hw`` (ceil mode, made
    explicit: the extra rows are never read by a kept window's valid part)."""
    ends = []
    for n, o, ki, si, pi, di in zip(hw, out_hw, k, s, p, d):
        need = (o - 1) * si + di * (ki - 1) + 1 - n - pi
        ends.append(max(pi, need))
    return ends


def _max_pool(g, r, ins):
    k, s, p, d = r.options["geom"]
    x = _shape(r.inputs[0])
    if len(x) != 4:
        _unsupported(g, r, ins, "unbatched (C, H, W) input")
    ends = _end_pads(x[2:], r.options["out_hw"], k, s, p, d)
    return g.node("MaxPool", [ins[0]], r.scope, kernel_shape=list(k), strides=list(s),
                  pads=[p[0], p[1], ends[0], ends[1]],
                  dilations=list(d) if tuple(d) != (1, 1) else None)


def _avg_pool(g, r, ins):
    k, s, p = r.options["geom"]
    x = _shape(r.inputs[0])
    if len(x) != 4:
        _unsupported(g, r, ins, "unbatched (C, H, W) input")
    out_hw = r.options["out_hw"]
    ends = _end_pads(x[2:], out_hw, k, s, p, (1, 1))
    # With every pad explicit and count_include_pad=1 each output is (window sum) / (kh*kw);
    # atrous's divisor (clipped window, count_include_pad=False or divisor_override) is a
    # constant per output position, so one Mul restores it exactly.
    y = g.node("AveragePool", [ins[0]], r.scope, kernel_shape=list(k), strides=list(s),
               pads=[p[0], p[1], ends[0], ends[1]], count_include_pad=1)
    dt = _dtype(r.inputs[0])
    scale = (k[0] * k[1]) / np.broadcast_to(np.asarray(r.options["divisor"], dtype=np.float64), tuple(out_hw))
    if np.all(scale == 1.0):
        return y
    return g.node("Mul", [y, g.const(scale, dt)], r.scope)


def _bins(n, o):
    """PyTorch's adaptive bins along one axis: [floor(i*n/o), ceil((i+1)*n/o))."""
    return [((i * n) // o, -((-(i + 1) * n) // o)) for i in range(o)]


def _adaptive_avg(g, r, ins):
    x = _shape(r.inputs[0])
    H, W = x[-2:]
    OH, OW = r.options["out_hw"]
    dt = _dtype(r.inputs[0])
    if (OH, OW) == (1, 1) and len(x) == 4:
        return g.node("GlobalAveragePool", [ins[0]], r.scope)
    if len(x) == 4 and OH and OW and H % OH == 0 and W % OW == 0:
        k = [H // OH, W // OW]
        return g.node("AveragePool", [ins[0]], r.scope, kernel_shape=k, strides=k)
    # General bins: y = P_h @ x @ P_w^T with P averaging each bin (rows of P sum to one).
    ph, pw = np.zeros((OH, H), np.float64), np.zeros((OW, W), np.float64)
    for i, (a, b) in enumerate(_bins(H, OH)):
        ph[i, a:b] = 1.0 / (b - a)
    for j, (a, b) in enumerate(_bins(W, OW)):
        pw[j, a:b] = 1.0 / (b - a)
    y = g.node("MatMul", [ins[0], g.const(pw.T, dt)], r.scope)
    return g.node("MatMul", [g.const(ph, dt), y], r.scope)


def _adaptive_max(g, r, ins):
    x = _shape(r.inputs[0])
    H, W = x[-2:]
    OH, OW = r.options["out_hw"]
    if (OH, OW) == (1, 1) and len(x) == 4:
        return g.node("GlobalMaxPool", [ins[0]], r.scope)
    if len(x) == 4 and OH and OW and H % OH == 0 and W % OW == 0:
        k = [H // OH, W // OW]
        return g.node("MaxPool", [ins[0]], r.scope, kernel_shape=k, strides=k)
    # Max is separable: reduce each row bin, concatenate, then each column bin.
    y = ins[0]
    for axis, n, o in ((len(x) - 2, H, OH), (len(x) - 1, W, OW)):
        parts = []
        for a, b in _bins(n, o):
            sl = g.node("Slice", [y, g.ints([a]), g.ints([b]), g.ints([axis])], r.scope)
            parts.append(_reduce(g, "ReduceMax", sl, [axis], 1, r.scope))
        y = g.node("Concat", parts, r.scope, axis=axis) if len(parts) > 1 else parts[0]
    return y


def _batch_norm(g, r, ins):
    o = r.options
    x = r.inputs[0]
    if o["training"]:
        _unsupported(g, r, ins, "batch statistics (training mode or no running statistics)")
    C, dt = _shape(x)[1], _dtype(x)
    scale = ins[1] or g.const(np.ones(C), dt)
    bias = ins[2] or g.const(np.zeros(C), dt)
    mean = g.value(o["running_mean"], "batch_norm", r.scope)
    var = g.value(o["running_var"], "batch_norm", r.scope)
    return g.node("BatchNormalization", [ins[0], scale, bias, mean, var], r.scope, epsilon=float(o["eps"]))


def _lrn(g, r, ins):
    o = r.options
    size, dt = o["size"], _dtype(r.inputs[0])
    if size % 2 == 1:
        return g.node("LRN", [ins[0]], r.scope, size=size, alpha=float(o["alpha"]),
                      beta=float(o["beta"]), bias=float(o["k"]))
    # Even sizes: PyTorch's window is c - size//2 .. c + (size-1)//2 and ONNX's LRN centres it
    # the other way, so build it: zero-pad the channel axis, add the size shifted slices.
    nd, C = len(_shape(r.inputs[0])), _shape(r.inputs[0])[1]
    sq = g.node("Mul", [ins[0], ins[0]], r.scope)
    pads = [0] * (2 * nd)
    pads[1], pads[nd + 1] = size // 2, (size - 1) // 2
    padded = g.node("Pad", [sq, g.ints(pads)], r.scope)
    total = None
    for j in range(size):
        part = g.node("Slice", [padded, g.ints([j]), g.ints([j + C]), g.ints([1])], r.scope)
        total = part if total is None else g.node("Add", [total, part], r.scope)
    base = g.node("Add", [g.node("Mul", [total, g.const(o["alpha"] / size, dt)], r.scope),
                          g.const(o["k"], dt)], r.scope)
    return g.node("Div", [ins[0], g.node("Pow", [base, g.const(o["beta"], dt)], r.scope)], r.scope)


def _prelu(g, r, ins):
    x, w = _shape(r.inputs[0]), _shape(r.inputs[1])
    slope = ins[1]
    if len(x) > 2 and w[0] > 1:
        # One slope per channel (dim 1): reshape (C,) to (C, 1, ..., 1) so it broadcasts.
        slope = g.node("Reshape", [slope, g.ints([w[0]] + [1] * (len(x) - 2))], r.scope)
    return g.node("PRelu", [ins[0], slope], r.scope)


def _hardtanh(g, r, ins):
    dt = _dtype(r.inputs[0])
    return g.node("Clip", [ins[0], g.const(r.options["lo"], dt), g.const(r.options["hi"], dt)], r.scope)


def _gelu(g, r, ins):
    approx = r.options["approximate"]
    if g.opset >= 20:
        return g.node("Gelu", [ins[0]], r.scope, approximate=approx)
    dt = _dtype(r.inputs[0])
    x = ins[0]
    if approx == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x, x], r.scope), x], r.scope)
        inner = g.node("Add", [x, g.node("Mul", [cube, g.const(0.044715, dt)], r.scope)], r.scope)
        t = g.node("Tanh", [g.node("Mul", [inner, g.const(math.sqrt(2 / math.pi), dt)], r.scope)], r.scope)
    else:
        t = g.node("Erf", [g.node("Mul", [x, g.const(1 / math.sqrt(2), dt)], r.scope)], r.scope)
    half = g.node("Mul", [x, g.const(0.5, dt)], r.scope)
    return g.node("Mul", [half, g.node("Add", [t, g.const(1.0, dt)], r.scope)], r.scope)


def _silu(g, r, ins):
    return g.node("Mul", [ins[0], g.node("Sigmoid", [ins[0]], r.scope)], r.scope)


def _softmax(op_type):
    def handler(g, r, ins):
        return g.node(op_type, [ins[0]], r.scope, axis=int(r.options["axis"]))
    return handler


def _leaky(g, r, ins):
    return g.node("LeakyRelu", [ins[0]], r.scope, alpha=float(r.options["slope"]))


def _elu(g, r, ins):
    return g.node("Elu", [ins[0]], r.scope, alpha=float(r.options["alpha"]))


def _reduce(g, op_type, x, axes, keepdims, scope):
    """ReduceX over ``axes``: axes is an input from opset 18 (13 for ReduceSum)."""
    as_input = g.opset >= (13 if op_type == "ReduceSum" else 18)
    if as_input:
        return g.node(op_type, [x, g.ints(axes)], scope, keepdims=int(keepdims))
    return g.node(op_type, [x], scope, axes=list(axes), keepdims=int(keepdims))


def _reduction(op_type):
    def handler(g, r, ins):
        nd = len(_shape(r.inputs[0]))
        axis = r.options.get("axis")
        axes = range(nd) if axis is None else ([axis] if isinstance(axis, int) else axis)
        axes = sorted(a % nd for a in axes) if nd else []
        return _reduce(g, op_type, ins[0], axes, bool(r.options.get("keepdims", False)), r.scope)
    return handler


def _reshape(g, r, ins):
    return g.node("Reshape", [ins[0], g.ints(_shape(r.out))], r.scope)


def _transpose(g, r, ins):
    nd = len(_shape(r.inputs[0]))
    axes = r.options.get("axes")
    perm = list(reversed(range(nd))) if axes is None else [a % nd for a in axes]
    return g.node("Transpose", [ins[0]], r.scope, perm=perm)


def _getitem(g, r, ins):
    index = r.options["index"]
    index = index if isinstance(index, tuple) else (index,)
    shape = _shape(r.inputs[0])
    if any(isinstance(i, (np.ndarray, list, Tensor)) or isinstance(i, bool) for i in index):
        _unsupported(g, r, ins, f"only integer, slice, None and ... indexing is exported (got {index!r})")
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    if sum(1 for i in index if i is Ellipsis) > 1:
        _unsupported(g, r, ins, "more than one Ellipsis")
    expanded = []
    for i in index:
        expanded += [slice(None)] * (len(shape) - n_real) if i is Ellipsis else [i]
    expanded += [slice(None)] * (len(shape) - sum(1 for i in expanded if i is not None))
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis = out_axis = 0
    for i in expanded:
        if i is None:
            unsqueeze.append(out_axis)
            out_axis += 1
            continue
        n = shape[axis]
        if isinstance(i, slice):
            a, b, st = i.indices(n)
            if (a, b, st) != (0, n, 1):
                # A negative step may stop before index 0: ONNX encodes that end as -inf.
                b = b if b >= 0 else -(2**62)
                starts, ends, axes, steps = starts + [a], ends + [b], axes + [axis], steps + [st]
            out_axis += 1
        else:
            k = int(i) % n
            starts, ends, axes, steps = starts + [k], ends + [k + 1], axes + [axis], steps + [1]
            squeeze.append(axis)
        axis += 1
    y = ins[0]
    if axes:
        y = g.node("Slice", [y, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)], r.scope)
    if squeeze:
        y = g.node("Squeeze", [y, g.ints(squeeze)], r.scope)
    if unsqueeze:
        y = g.node("Unsqueeze", [y, g.ints(unsqueeze)], r.scope)
    return y if y != ins[0] else g.node("Identity", [y], r.scope)


def _cast(g, r, ins):
    to = g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(r.options["dtype"]))
    return g.node("Cast", [ins[0]], r.scope, to=to)


def _cat(g, r, ins):
    return g.node("Concat", ins, r.scope, axis=int(r.options["axis"]))


def _stack(g, r, ins):
    axis = int(r.options["axis"])
    parts = [g.node("Unsqueeze", [x, g.ints([axis])], r.scope) for x in ins]
    return g.node("Concat", parts, r.scope, axis=axis)


def _gather_axes(g, r, x, taps_per_axis):
    """Apply per-axis (index, weight) taps: sum_t Gather(x, i_t, axis) * w_t, axis by axis."""
    y = x
    nd = len(_shape(r.inputs[0]))
    dt = _dtype(r.inputs[0])
    for ax, taps in taps_per_axis:
        parts = []
        for idx, w in taps:
            part = g.node("Gather", [y, g.ints(np.asarray(idx).ravel())], r.scope, axis=ax)
            if w is not None:
                shape = [1] * nd
                shape[ax] = -1
                part = g.node("Mul", [part, g.const(np.asarray(w).reshape(shape), dt)], r.scope)
            parts.append(part)
        y = parts[0] if len(parts) == 1 else g.node("Add", parts, r.scope)
    return y


def _pad(g, r, ins):
    from ..functional.shape_ops import _pad_index

    o, shape = r.options, _shape(r.inputs[0])
    pad, nd = list(o["pad"]), len(shape)
    if o["mode"] == "constant":
        pads = [0] * (2 * nd)
        for k in range(len(pad) // 2):  # pad lists the last dimension first
            ax = nd - 1 - k
            pads[ax], pads[nd + ax] = pad[2 * k], pad[2 * k + 1]
        return g.node("Pad", [ins[0], g.ints(pads), g.const(o["value"], _dtype(r.inputs[0]))], r.scope,
                      mode="constant")
    # reflect / replicate / circular: gather the very source indices atrous uses.
    taps = [(nd - 1 - k, [(_pad_index(shape[nd - 1 - k], pad[2 * k], pad[2 * k + 1], o["mode"]), None)])
            for k in range(len(pad) // 2)]
    return _gather_axes(g, r, ins[0], taps)


def _interpolate(g, r, ins):
    from ..functional.shape_ops import _linear_taps, _nearest_taps

    o, shape = r.options, _shape(r.inputs[0])
    dtype = _dtype(r.inputs[0]).type
    taps = []
    for ax, n_out, s in zip((2, 3), o["size"], o["scales"]):
        if o["mode"] == "bilinear":
            i0, i1, w0, w1 = _linear_taps(shape[ax], n_out, s, o["align_corners"], dtype)
            taps.append((ax, [(i0, w0), (i1, w1)]))
        else:
            taps.append((ax, [(_nearest_taps(shape[ax], n_out, s, o["mode"] == "nearest-exact", dtype), None)]))
    return _gather_axes(g, r, ins[0], taps)


def _dropout(g, r, ins):
    _unsupported(g, r, ins, "dropout in training mode (export runs the model in eval mode; "
                 "functional dropout called with training=True stays random)")


def _handlers():
    from .. import ops
    from ..functional import activation as A
    from ..functional import conv as C
    from ..functional import normalization as N
    from ..functional import pooling as P
    from ..functional import shape_ops as S

    return {
        C.Conv2d: _conv, C.ConvTranspose2d: _conv_transpose, C.Linear: _linear,
        P._MaxPool2d: _max_pool, P._AvgPool2d: _avg_pool,
        P._AdaptiveAvgPool2d: _adaptive_avg, P._AdaptiveMaxPool2d: _adaptive_max,
        N._BatchNorm: _batch_norm, N._LocalResponseNorm: _lrn,
        A._ReLU: _elementwise("Relu"), A._Sigmoid: _elementwise("Sigmoid"),
        A._Tanh: _elementwise("Tanh"), A._LeakyReLU: _leaky, A._ELU: _elu, A._PReLU: _prelu,
        A._Hardtanh: _hardtanh, A._GELU: _gelu, A._SiLU: _silu,
        A._Softmax: _softmax("Softmax"), A._LogSoftmax: _softmax("LogSoftmax"), A._Dropout: _dropout,
        ops.Add: _elementwise("Add"), ops.Sub: _elementwise("Sub"), ops.Mul: _elementwise("Mul"),
        ops.Div: _elementwise("Div"), ops.Pow: _elementwise("Pow"), ops.MatMul: _elementwise("MatMul"),
        ops.Neg: _elementwise("Neg"), ops.Exp: _elementwise("Exp"), ops.Log: _elementwise("Log"),
        ops.Sum: _reduction("ReduceSum"), ops.Mean: _reduction("ReduceMean"),
        ops.Max: _reduction("ReduceMax"), ops.Reshape: _reshape, ops.Transpose: _transpose,
        ops.GetItem: _getitem, ops.Cast: _cast,
        S.Cat: _cat, S.Stack: _stack, S.Pad: _pad, S.Interpolate: _interpolate,
    }


# ----- export ---------------------------------------------------------------------------------
def _prune(graph, outputs):
    """Keep only the nodes and initializers the outputs depend on."""
    needed, kept = set(outputs), []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return list(reversed(kept)), {k: v for k, v in graph.initializers.items() if k in needed}


def _check_opset(onnx, opset):
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"onnx.export: opset must be an int in [{MIN_OPSET}, {latest}] "
                         f"(the installed onnx {onnx.__version__} knows up to {latest}), got {opset!r}")


def export(model, path, input_shape, opset=17, *, dtype=None, input_name="input", output_name="output",
           check=True):
    """Trace ``model`` on an input of ``input_shape`` and write it to ``path`` as ONNX.

    Args:
        model: an ``atrous.nn.Module`` (traced in eval mode; its training flags are restored).
        path: file to write (atomically), or None to only build the model.
        input_shape: the full input shape, e.g. ``(1, 3, 224, 224)``; the graph is static.
        opset: ONNX opset version, 13 up to what the installed ``onnx`` knows (default 17).
        dtype: input dtype (default: the dtype of the model's first parameter, else float32).
        check: run ``onnx.checker.check_model`` on the result.

    Returns: the ``onnx.ModelProto``. Parameters and buffers become initializers named by
    their ``state_dict`` keys; the graph input is ``input_name``, the outputs ``output_name``
    (``output_name_0``, ``_1``, ... when forward returns a tuple or list).

    Raises ``NotImplementedError`` naming the op and the module it ran in when an op has no
    ONNX mapping (e.g. dropout forced into training mode), ``ValueError`` for a bad opset or
    shape.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("onnx.export needs the 'onnx' package: pip install 'atrous[onnx]'") from e
    _check_opset(onnx, opset)
    shape = tuple(int(n) for n in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"onnx.export: input_shape must be positive ints, got {tuple(input_shape)!r}")
    if dtype is None:
        first = next(iter(model.parameters()), None)
        dtype = first.data.dtype if first is not None else np.float32
    dtype = np.dtype(dtype)

    g = _Graph(onnx, opset)
    for name, p in model.named_parameters():
        g.bind(p, name)
        g.bind(p.data, name)
        g.initializers[name] = p.data
    for name, b in model.named_buffers():
        if b is not None:
            g.bind(b, name)
            g.bind(b.data, name)
            g.initializers[name] = b.data
    x = Tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))
    g.bind(x, input_name)

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad(), _recording(model) as records:
            out = model(x)
    finally:
        for m, mode in modes:
            m.training = mode

    handlers = _handlers()
    for r in records:
        handler = handlers.get(r.cls, _unsupported)
        ins = [g.value(v, r.cls.__name__, r.scope) for v in r.inputs]
        g.bind(r.out, handler(g, r, ins))

    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    out_names = [output_name] if len(outs) == 1 else [f"{output_name}_{i}" for i in range(len(outs))]
    for t, name in zip(outs, out_names):
        if not isinstance(t, Tensor) or id(t) not in g.names:
            raise ValueError(f"onnx.export: the model's output {name} was not computed by traced atrous "
                             f"ops from the input (got {type(t).__name__})")
        # Route every output through a node named after it (Identity is free in runtimes).
        g.node("Identity", [g.names[id(t)]], "output", outputs=[name])
    nodes, inits = _prune(g, out_names)
    total = sum(a.nbytes for a in inits.values())
    if total > _PROTOBUF_LIMIT - (64 << 20):
        raise ValueError(f"onnx.export: {total / 2**30:.2f} GiB of weights exceed protobuf's 2 GiB "
                         "limit for one file (external data is not supported by this exporter)")

    helper, elem = onnx.helper, onnx.helper.np_dtype_to_tensor_dtype
    graph = helper.make_graph(
        nodes,
        type(model).__name__,
        [helper.make_tensor_value_info(input_name, elem(dtype), list(shape))],
        [helper.make_tensor_value_info(n, elem(t.data.dtype), list(t.shape)) for t, n in zip(outs, out_names)],
        initializer=[onnx.numpy_helper.from_array(np.asarray(a, order="C"), name) for name, a in inits.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="atrous",
                              ir_version=max(8, helper.find_min_ir_version_for(opsets)))
    from .. import __version__

    proto.producer_version = __version__
    if check:
        onnx.checker.check_model(proto)
    if path is not None:
        from ..io.atomic import atomic_write

        with atomic_write(path) as f:
            f.write(proto.SerializeToString())
    return proto
