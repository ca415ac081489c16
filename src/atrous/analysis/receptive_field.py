"""Receptive fields of every tensor in a traced forward pass, and ``receptive_field()``.

How it sees the graph: hooks on leaf modules alone cannot see what a model's ``forward`` does
between them (a ResNet block's ``out + identity``, an Inception block's ``cat``, a functional
``F.max_pool2d``), so the receptive field is carried *on the tensors*: a side table keyed by
``id(tensor)`` (each entry also holds the tensor, so no id is reused while the table lives)
maps a tensor to its field, per axis (H and W) an :class:`~atrous.analysis.rf_rules.Axis`.

- The input is (size 1, jump 1, start 0) on both axes.
- A leaf module of a known kind (Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d and the
  adaptive pools) maps its input's field to its output's with its own settings. An op
  applied as a function (a summary row of a model imported from ONNX) is looked up below.
- Any other tensor is found by walking the autograd graph back (``tensor._fn.parents``) to
  tensors already in the table (keyed by graph identity, ``autograd.graph_ref``: the graph
  holds data-free ``Node``s for intermediate tensors). Each node on the way is mapped by its
  op: convolution and pooling functions by their recorded geometry (a mean or max over H and
  W kept 4-D is a global pooling), ``F.pad`` and slicing by the offset they apply, and everything else by
  shapes alone: an op that keeps H and W (activations, batch norm, ``+``, ``cat`` along
  channels) takes the union of its inputs' fields; an op that
  folds H and W away (flatten, a sum over them) becomes one unit seeing its whole input map.
  An unknown op that changes H and W in another way is treated as seeing its whole input (an
  upper bound), and a note says so.

Parameters and other tensors that do not depend on the input carry no field. A tensor that
is not 4-D is one unit per example with a field on each axis; after ``flatten`` that is the
whole map (size = the extent of all units, jump = the map width times the jump).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from ..autograd import graph_ref
from ..shape import pair, same_padding
from ..tensor import Tensor
from .rf_rules import (
    INPUT,
    Axis,
    through_adaptive,
    through_global,
    through_offset,
    through_transposed,
    through_window,
    union,
)
from .trace import OpCall, first_tensor, trace

__all__ = ["ReceptiveField", "receptive_field", "FieldTracker"]


def _key(t):
    """The table key of a Tensor: the identity of what the autograd graph holds for it."""
    return id(graph_ref(t))


class _Field(NamedTuple):
    h: Axis
    w: Axis
    hw: Optional[tuple]  # (H, W) of a 4-D tensor; None for one unit per example

    def lengths(self):
        return self.hw if self.hw is not None else (1, 1)


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of a feature map's units in input pixels, per axis (H, W).

    ``size``: window height and width; ``jump``: distance between the centres of
    neighbouring units (the effective stride); ``start``: the centre of unit (0, 0), input
    pixel p having its centre at p. ``output_hw`` is the map's (H, W), or None when the
    output has no spatial axes (one unit per example). ``exact`` is False when some layer
    was approximated (see ``notes``).
    """

    size: tuple
    jump: tuple
    start: tuple
    output_hw: Optional[tuple] = None
    input_hw: Optional[tuple] = None
    exact: bool = True
    notes: tuple = field(default=())

    def window(self, i, j):
        """Inclusive input rows (top, bottom) and columns (left, right) that unit (i, j)
        sees, not clipped to the image."""
        rows = Axis(self.size[0], self.jump[0], self.start[0]).window(i)
        cols = Axis(self.size[1], self.jump[1], self.start[1]).window(j)
        return rows, cols


def _spatial_hw(t):
    return tuple(t.shape[2:]) if t.ndim == 4 else None


class FieldTracker:
    """The side table: ``id(tensor) -> (tensor, field)`` for one traced pass."""

    def __init__(self, x):
        self.memo = {}
        self.notes = []
        hw = _spatial_hw(x)
        self.memo[_key(x)] = (x, _Field(INPUT, INPUT, hw) if hw is not None else None)

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # ----- lookup: the table, else a walk back through the autograd graph ----------------
    def field(self, t):
        """The field of tensor ``t`` (None if it does not depend on the input)."""
        if not isinstance(t, Tensor):
            return None
        stack = [graph_ref(t)]
        while stack:
            node = stack[-1]
            if id(node) in self.memo:
                stack.pop()
                continue
            fn = node._fn
            if fn is None:  # a parameter or constant: not a function of the input
                self.memo[id(node)] = (node, None)
                stack.pop()
                continue
            pending = [p for p in fn.parents if p is not None and id(p) not in self.memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            self.memo[id(node)] = (node, self._through_function(fn, node))
        return self.memo[_key(t)][1]

    def set_module_output(self, module, inp, out):
        """Record the field of a leaf module's output; known layers use their settings."""
        if not isinstance(out, Tensor) or _key(out) in self.memo:
            return self.field(out)
        f_in = self.field(inp) if isinstance(inp, Tensor) else None
        result = None
        if f_in is not None and f_in.hw is not None and out.ndim == 4:
            result = self._through_module(module, f_in, out)
        if result is None:
            return self.field(out)
        self.memo[_key(out)] = (out, result)
        return result

    # ----- rules -------------------------------------------------------------------------
    def _window(self, f, out, kernel, stride, pad_lo, dilation):
        k, s, d = pair(kernel), pair(stride), pair(dilation)
        return _Field(through_window(f.h, k[0], s[0], pad_lo[0], d[0]),
                      through_window(f.w, k[1], s[1], pad_lo[1], d[1]), _spatial_hw(out))

    def _adaptive(self, f, out, kind):
        (n_h, n_w), (m_h, m_w) = f.hw, out.shape[2:]
        h, exact_h = through_adaptive(f.h, n_h, m_h)
        w, exact_w = through_adaptive(f.w, n_w, m_w)
        if not (exact_h and exact_w):
            self.note(f"{kind} from {f.hw} to {tuple(out.shape[2:])}: bins of unequal width; "
                      "the widest bin's field is reported")
        return _Field(h, w, _spatial_hw(out))

    def _transposed(self, f, out, kernel, stride, pad_lo, dilation, kind):
        self.note(f"{kind}: the field of a transposed convolution is an upper bound")
        k, s, d = pair(kernel), pair(stride), pair(dilation)
        return _Field(through_transposed(f.h, k[0], s[0], pad_lo[0], d[0]),
                      through_transposed(f.w, k[1], s[1], pad_lo[1], d[1]), _spatial_hw(out))

    def _through_module(self, m, f, out):
        from .. import nn

        kind = type(m).__name__
        if isinstance(m, nn.Conv2d):
            if m.padding == "valid":
                pad = (0, 0)
            elif m.padding == "same":  # the odd pixel goes to the end, so lo = total // 2
                pad = tuple(same_padding(n, k, 1, d)[0] for n, k, d in zip(f.hw, m.kernel_size, m.dilation))
            else:
                pad = m.padding
            return self._window(f, out, m.kernel_size, m.stride, pad, m.dilation)
        if isinstance(m, nn.ConvTranspose2d):
            return self._transposed(f, out, m.kernel_size, m.stride, m.padding, m.dilation, kind)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.kernel_size if m.stride is None else m.stride
            return self._window(f, out, m.kernel_size, stride, pair(m.padding), getattr(m, "dilation", 1))
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return self._adaptive(f, out, kind)
        return None

    def _through_function(self, fn, out):
        from ..functional import conv as C
        from ..functional import fused as Fu
        from ..functional import pooling as P
        from ..functional import shape_ops as S
        from ..ops import GetItem, Max, Mean, Sum

        parents = [(p, self.memo[id(p)][1]) for p in fn.parents if p is not None]
        parents = [(p, f) for p, f in parents if f is not None]
        if not parents:
            return None
        x, f = parents[0]
        first_is_data = fn.parents[0] is x  # the geometry applies to the op's first input
        spatial = first_is_data and f.hw is not None and out.ndim == 4 and len(parents) == 1
        if spatial:
            try:
                if isinstance(fn, (C.Conv2d, Fu.ConvReLU)):
                    stride, padding, dilation, _ = fn.args
                    return self._window(f, out, fn.w.shape[2:], stride, (padding[0][0], padding[1][0]), dilation)
                if isinstance(fn, C.ConvTranspose2d):
                    stride, padding, dilation, _ = fn.args
                    return self._transposed(f, out, fn.w.shape[2:], stride,
                                            (padding[0][0], padding[1][0]), dilation, "conv_transpose2d")
                if isinstance(fn, (P._MaxPool2d, P._AvgPool2d)):
                    k, s, p = fn.geom[:3]
                    d = fn.geom[3] if len(fn.geom) > 3 else 1
                    return self._window(f, out, k, s, p, d)
                if isinstance(fn, (P._AdaptiveAvgPool2d, P._AdaptiveMaxPool2d)):
                    return self._adaptive(f, out, "adaptive pooling")
                if isinstance(fn, (Mean, Max, Sum)) and tuple(sorted(fn.axes)) == (2, 3):
                    # a global pooling kept 4-D (ONNX's GlobalAveragePool): one unit sees the map
                    return _Field(through_global(f.h, f.hw[0]), through_global(f.w, f.hw[1]), (1, 1))
                if isinstance(fn, S.Pad):
                    return self._pad(f, out, fn.axes)
                if isinstance(fn, GetItem):
                    sliced = self._slice(f, x, out, fn.index)
                    if sliced is not None:
                        return sliced
            except (AttributeError, TypeError, ValueError, IndexError):
                pass  # an op whose recorded settings look different: fall back on shapes
        return self._by_shape(parents, out, type(fn).__name__)

    def _pad(self, f, out, axes):
        h, w = f.h, f.w
        for ax, lo, _hi in axes:
            if ax == out.ndim - 2:
                h = through_offset(h, -lo)
            elif ax == out.ndim - 1:
                w = through_offset(w, -lo)
        return _Field(h, w, _spatial_hw(out))

    def _slice(self, f, x, out, index):
        """``x[:, :, a:b:s, c:d:t]`` or ``x[..., a:b, c:d]`` crops of a 4-D map; None for
        anything else (integer or array indices, new axes)."""
        index = list(index) if isinstance(index, tuple) else [index]
        if index.count(Ellipsis) == 1:
            at = index.index(Ellipsis)
            index[at:at + 1] = [slice(None)] * (4 - len(index) + 1)
        if len(index) > 4 or not all(isinstance(i, slice) for i in index):
            return None
        axes = [f.h, f.w]
        for k, sl in enumerate(index[2:]):
            first, _, step = sl.indices(x.shape[2 + k])
            if step < 1:
                return None
            axes[k] = through_offset(axes[k], first, step)
        return _Field(axes[0], axes[1], _spatial_hw(out))

    def _by_shape(self, parents, out, kind):
        """Ops known only by their shapes: union where H, W are kept, whole map otherwise."""
        hw = _spatial_hw(out)
        branches = []
        for p, f in parents:
            if f.hw is not None and (hw is None or (f.hw != hw and f.hw != (1, 1))):
                if hw is not None:
                    self.note(f"{kind}: maps {f.hw} to {hw} in an unknown way; each output unit "
                              "is taken to see the whole input map (an upper bound)")
                f = _Field(through_global(f.h, f.hw[0]), through_global(f.w, f.hw[1]), None)
            branches.append(f)
        n_h, n_w = hw if hw is not None else (1, 1)
        h = union([(f.h, f.lengths()[0]) for f in branches], n_h)
        w = union([(f.w, f.lengths()[1]) for f in branches], n_w)
        return _Field(h, w, hw)


def _clean(v):
    """Integral values as ints (sizes, most jumps and starts), others as floats."""
    v = float(v)
    return int(v) if v.is_integer() else v


def per_axis(f):
    """(size, jump, start) of a field, each an (H, W) pair; None for no field."""
    if f is None:
        return None, None, None
    return ((_clean(f.h.size), _clean(f.w.size)), (_clean(f.h.jump), _clean(f.w.jump)),
            (_clean(f.h.start), _clean(f.w.start)))


def _public(f, input_hw, notes):
    if f is None:
        return None
    size, jump, start = per_axis(f)
    return ReceptiveField(size=size, jump=jump, start=start, output_hw=f.hw, input_hw=input_hw,
                          exact=not notes, notes=tuple(notes))


def fields_of_trace(x, out, calls):
    """Fields for a traced pass: a list with one entry per call, and the output's field."""
    tracker = FieldTracker(x)
    per_call = []
    for call in calls:
        if isinstance(call, OpCall):  # an op: its recorded settings, through the graph walk
            per_call.append(tracker.field(first_tensor(call.output)))
            continue
        inp = first_tensor(call.args)
        per_call.append(tracker.set_module_output(call.module, inp, first_tensor(call.output)))
    final = tracker.field(first_tensor(out))
    return tracker, per_call, final


def receptive_field(model, input_shape, dtype=None):
    """Receptive field of the model's output units on an input of ``input_shape``.

    ``input_shape`` is one example's shape without the batch axis, e.g. ``(3, 224, 224)`` or
    ``"3x224x224"``. The model runs once on zeros (in eval mode; its state is untouched).
    Returns a :class:`ReceptiveField`, or None when the output does not depend on a 4-D
    input. If the model returns several tensors, the first is used.

    >>> from atrous import nn
    >>> net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=r, dilation=r) for r in (1, 2, 4, 8)])
    >>> rf = receptive_field(net, (1, 40, 40))
    >>> rf.size, rf.jump, rf.start
    ((31, 31), (1, 1), (0, 0))
    """
    x, out, calls = trace(model, input_shape, dtype=dtype, op="receptive_field", ops=False)
    tracker, _, final = fields_of_trace(x, out, calls)
    return _public(final, _spatial_hw(x), tracker.notes)
