"""``summary(model, input_shape)``: one row per layer call with shapes, parameters, MACs,
receptive fields and the cost of not sharing weights.

What is counted, and how:

- Rows are calls of leaf modules (modules without children), in call order; a module called
  twice gives two rows (the second named ``name#2``) and its parameters are counted on the
  first only, so the rows' parameters add up to those of the modules that ran. Totals count
  every parameter of the model once (tied weights once, unused modules too), as
  ``sum(p.size for p in model.parameters())``.
- Ops applied as functions outside atrous's own layers also get rows: ``F.conv2d``,
  ``F.linear``, pooling, ``F.batch_norm`` and activations in a model's ``forward``, and every
  layer of a model imported from ONNX (``atrous.onnx.load``), which has no layer modules.
  Such a row's type is the op (``conv2d``, ``linear``, ``max_pool2d``, ...); its name is the
  ONNX node's name, else its weight's module path (``conv1.weight`` -> ``conv1``), else the
  op inside the module that ran it (``layer1.0.relu``); its parameters are the model
  parameters among the op's inputs, each counted once. A leaf module of a user's class
  whose forward applies such ops is shown as those rows (see :mod:`atrous.analysis.trace`).
- MACs (multiply-accumulates) per example: Conv2d Ho*Wo*O*(C/groups)*kh*kw,
  ConvTranspose2d H*W*C*(O/groups)*kh*kw (H, W of its input), Linear in*out per row.
  Bias additions, batch norm, activations, pooling and residual additions count 0, the
  convention behind the usual figures (ResNet-18 1.82 G, ResNet-50 4.1 G at 224x224).
  Functional ops count the same (``conv2d`` and ``conv2d_relu`` as Conv2d, ``linear`` as
  Linear, a ``matmul`` by a parameter (..., n, k) @ (k, m) as n*m*k); the convolution an
  ONNX AveragePool node may run for its window sums is an ``avg_pool2d`` row (0 MACs).
- Receptive field of each row's output, per axis (H x W): ``size``, ``jump`` (effective
  stride) and ``start`` (centre of unit 0, input pixel p centred at p); see
  :mod:`atrous.analysis.receptive_field` for how branches and residual additions are handled.
- For Conv2d and functional ``conv2d`` rows, ``unshared_params`` is what a locally connected
  layer with the same connectivity would need: a separate filter (and bias, if the layer has
  one) for each of the Ho*Wo output positions, Ho*Wo*O*(C/groups*kh*kw + 1), without the
  "+ 1" for bias=False.
  ``sharing_ratio`` = unshared / shared = Ho*Wo.

>>> from atrous import nn
>>> s = summary(nn.Conv2d(3, 96, 11, stride=4), (3, 227, 227))   # AlexNet's conv1
>>> r = s.rows[0]
>>> r.output_shape, r.params, r.unshared_params, r.rf_size
((96, 55, 55), 34944, 105705600, (11, 11))
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .receptive_field import ReceptiveField, _public, _spatial_hw, fields_of_trace, per_axis
from .trace import OpCall, first_tensor, parse_shape, trace

__all__ = ["Row", "Totals", "Summary", "summary"]


@dataclass
class Row:
    """One leaf-module call or functional op call. Shapes exclude the batch axis; MACs are per
    example; the receptive-field entries are (H, W) pairs, None where the output does not
    depend on a 4-D input; ``unshared_params``/``sharing_ratio`` are None except for convolutions."""

    name: str
    type: str
    output_shape: tuple
    params: int
    trainable_params: int
    macs: int
    rf_size: Optional[tuple]
    rf_jump: Optional[tuple]
    rf_start: Optional[tuple]
    unshared_params: Optional[int] = None
    sharing_ratio: Optional[float] = None


@dataclass
class Totals:
    """Whole-model figures: parameters (every one once), MACs per example, the Conv2d
    layers' shared vs locally connected parameter counts, and the output's receptive field."""

    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    conv_params: int
    unshared_params: int
    sharing_ratio: Optional[float]
    input_shape: tuple
    output_shape: tuple
    receptive_field: Optional[ReceptiveField]


@dataclass
class Summary:
    """The result of :func:`summary`: ``rows``, ``totals`` and ``notes`` (approximations).

    ``str()`` (and the REPL) shows a table; ``to_markdown()`` and ``to_csv()`` give the same
    data for documents and spreadsheets.
    """

    rows: list
    totals: Totals
    notes: list = field(default_factory=list)

    def __str__(self):
        return _text_table(self)

    __repr__ = __str__

    def to_markdown(self):
        return _markdown(self)

    def to_csv(self):
        return _csv(self)


# ----- counting -------------------------------------------------------------------------------
def _macs(module, inp, out):
    from .. import nn

    if out is None:
        return 0
    if isinstance(module, nn.Conv2d) and out.ndim == 4:
        kh, kw = module.kernel_size
        O, Ho, Wo = out.shape[1:]
        return Ho * Wo * O * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d) and inp is not None and inp.ndim == 4:
        kh, kw = module.kernel_size
        C, H, W = inp.shape[1:]
        return H * W * C * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        rows = int(np.prod(out.shape[1:-1])) if out.ndim > 2 else 1
        return rows * module.in_features * module.out_features
    return 0


def _unshared(module, out):
    """Locally connected parameter count of a Conv2d call and the per-filter count."""
    from .. import nn

    if not isinstance(module, nn.Conv2d) or out is None or out.ndim != 4:
        return None, None
    kh, kw = module.kernel_size
    per_filter = (module.in_channels // module.groups) * kh * kw + (module.bias is not None)
    O, Ho, Wo = out.shape[1:]
    return Ho * Wo * O * per_filter, O * per_filter


def _op_macs(call, out):
    """MACs per example of a functional op, counted as the equivalent layer's."""
    fn, kind = call.fn, call.kind
    if out is None:
        return 0
    if kind in ("conv2d", "conv2d_relu") and out.ndim == 4:
        _, Cg, kh, kw = fn.w.shape
        O, Ho, Wo = out.shape[1:]
        return Ho * Wo * O * Cg * kh * kw
    if kind == "conv_transpose2d" and out.ndim == 4:
        _, Og, kh, kw = fn.w.shape
        C, H, W = fn.x.shape[1:]
        return H * W * C * Og * kh * kw
    if kind == "linear":
        rows = int(np.prod(out.shape[1:-1])) if out.ndim > 2 else 1
        return rows * fn.w.shape[1] * fn.w.shape[0]
    if kind == "matmul":
        a = call.inputs[0]
        k = a.shape[-1] if getattr(a, "ndim", 0) >= 1 else 1
        return int(np.prod(out.shape[1:])) * k
    return 0


def _op_unshared(call, out):
    """As ``_unshared`` for a functional convolution: (locally connected count, per filter)."""
    if call.kind not in ("conv2d", "conv2d_relu") or out is None or out.ndim != 4:
        return None, None
    _, Cg, kh, kw = call.fn.w.shape
    has_bias = len(call.inputs) > 2 and call.inputs[2] is not None
    O, Ho, Wo = out.shape[1:]
    per_filter = Cg * kh * kw + has_bias
    return Ho * Wo * O * per_filter, O * per_filter


def summary(model, input_shape, dtype=None):
    """Trace ``model`` on a zero input and tabulate every layer call.

    ``input_shape``: one example's shape without the batch axis, e.g. ``(3, 224, 224)`` or
    ``"3x224x224"`` (a batch of 1 is run, in eval mode, leaving the model's state as it was;
    ``dtype`` defaults to the model's parameters' dtype).
    Returns a :class:`Summary` (``rows``, ``totals``); see the module docstring for what is
    counted. ``print(summary(...))`` prints the table.
    """
    shape = parse_shape(input_shape)
    x, out, calls = trace(model, shape, dtype=dtype)
    tracker, fields, final = fields_of_trace(x, out, calls)

    rows, seen_params, seen_conv, names = [], set(), {}, {}
    conv_params = unshared_total = 0
    for call, f in zip(calls, fields):
        res = first_tensor(call.output)
        count = names[call.name] = names.get(call.name, 0) + 1
        params = trainable = 0
        is_op = isinstance(call, OpCall)
        for p in (p for _, p in call.params) if is_op else call.module.parameters():
            if id(p) not in seen_params:
                seen_params.add(id(p))
                params += p.size
                trainable += p.size if p.requires_grad else 0
        if is_op:
            kind, macs = call.kind, _op_macs(call, res)
            unshared, per_module = _op_unshared(call, res)
            owner = id(call.fn.w) if unshared is not None else None  # a shared weight counts once
        else:
            kind, macs = type(call.module).__name__, _macs(call.module, first_tensor(call.args), res)
            unshared, per_module = _unshared(call.module, res)
            owner = id(call.module)
        ratio = None
        if unshared is not None:
            unshared_total += unshared
            if owner not in seen_conv:
                seen_conv[owner] = True
                conv_params += per_module
            ratio = unshared / per_module if per_module else None
        size, jump, start = per_axis(f)
        rows.append(Row(
            name=call.name if count == 1 else f"{call.name}#{count}",
            type=kind,
            output_shape=tuple(res.shape[1:]) if res is not None else (),
            params=params, trainable_params=trainable, macs=macs,
            rf_size=size, rf_jump=jump, rf_start=start,
            unshared_params=unshared, sharing_ratio=ratio,
        ))

    all_params = list(model.parameters())
    total = sum(p.size for p in all_params)
    trainable = sum(p.size for p in all_params if p.requires_grad)
    y = first_tensor(out)
    totals = Totals(
        params=total, trainable_params=trainable, non_trainable_params=total - trainable,
        macs=sum(r.macs for r in rows), conv_params=conv_params, unshared_params=unshared_total,
        sharing_ratio=unshared_total / conv_params if conv_params else None,
        input_shape=shape, output_shape=tuple(y.shape[1:]) if y is not None else (),
        receptive_field=_public(final, _spatial_hw(x), tracker.notes),
    )
    return Summary(rows, totals, list(tracker.notes))


# ----- formatting -------------------------------------------------------------------------------
def _num(v):
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) or float(v).is_integer():
        return str(int(v))
    return f"{v:.4g}"


def _pair(p):
    return "-" if p is None else f"{_num(p[0])}x{_num(p[1])}"


def _shape(s):
    return "x".join(str(d) for d in s) if s else "-"


def _int(v):
    return "-" if v is None else f"{v:,}"


def _ratio(v):
    return "-" if v is None else (f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}")


def human(n):
    """1818558976 -> '1.82 G' (for MACs and parameter counts)."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


_COLUMNS = ("Layer", "Type", "Output", "Params", "Trainable", "MACs", "RF", "Jump", "Start",
            "Unshared", "Ratio")


def _cells(row):
    return (row.name, row.type, _shape(row.output_shape), _int(row.params), _int(row.trainable_params),
            _int(row.macs), _pair(row.rf_size), _pair(row.rf_jump), _pair(row.rf_start),
            _int(row.unshared_params), _ratio(row.sharing_ratio))


def _total_cells(t):
    rf = t.receptive_field
    return ("total", "", _shape(t.output_shape), _int(t.params), _int(t.trainable_params), _int(t.macs),
            _pair(rf.size if rf else None), _pair(rf.jump if rf else None),
            _pair(rf.start if rf else None), _int(t.unshared_params), _ratio(t.sharing_ratio))


def _footer(s):
    t = s.totals
    lines = [
        f"Input {_shape(t.input_shape)} -> output {_shape(t.output_shape)}",
        f"Parameters: {t.params:,} (trainable {t.trainable_params:,}, non-trainable {t.non_trainable_params:,})",
        f"MACs per example: {t.macs:,} ({human(t.macs)}MACs; conv and linear layers)",
    ]
    if t.conv_params:
        lines.append(f"Conv2d parameters: {t.conv_params:,} shared; {t.unshared_params:,} without sharing "
                     f"(locally connected), {_ratio(t.sharing_ratio)}x more")
    rf = t.receptive_field
    if rf is not None:
        lines.append(f"Receptive field of the output: {_pair(rf.size)} pixels, jump {_pair(rf.jump)}, "
                     f"first centre at {_pair(rf.start)}")
    lines += [f"Note: {n}" for n in s.notes]
    return lines


def _text_table(s):
    frozen = s.totals.non_trainable_params > 0
    keep = [i for i, c in enumerate(_COLUMNS) if frozen or c != "Trainable"]
    body = [[c[i] for i in keep] for c in map(_cells, s.rows)]
    head = [_COLUMNS[i] for i in keep]
    widths = [max(len(r[k]) for r in [head] + body) for k in range(len(head))]
    left = {0, 1, 2}  # text columns align left, numbers right

    def line(cells):
        return "  ".join(c.ljust(w) if k in left else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(head))
    return "\n".join([line(head), rule, *map(line, body), rule, *_footer(s)])


def _markdown(s):
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    right = {3, 4, 5, 9, 10}
    out = [line(_COLUMNS), "|" + "|".join("---:" if k in right else "---" for k in range(len(_COLUMNS))) + "|"]
    out += [line(_cells(r)) for r in s.rows]
    out.append(line(tuple(f"**{c}**" if c else c for c in _total_cells(s.totals))))
    out.append("")
    out += [f"{ln}  " for ln in _footer(s)]
    return "\n".join(out) + "\n"


_CSV_FIELDS = ("name", "type", "output_shape", "params", "trainable_params", "macs", "rf_size_h",
               "rf_size_w", "rf_jump_h", "rf_jump_w", "rf_start_h", "rf_start_w", "unshared_params",
               "sharing_ratio")


def _csv_row(name, type_, shape, params, trainable, macs, size, jump, start, unshared, ratio):
    def axis(p, k):
        return "" if p is None else p[k]

    return [name, type_, _shape(shape), params, trainable, macs, axis(size, 0), axis(size, 1),
            axis(jump, 0), axis(jump, 1), axis(start, 0), axis(start, 1),
            "" if unshared is None else unshared, "" if ratio is None else _num(ratio)]


def _csv(s):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_CSV_FIELDS)
    for r in s.rows:
        w.writerow(_csv_row(r.name, r.type, r.output_shape, r.params, r.trainable_params, r.macs,
                            r.rf_size, r.rf_jump, r.rf_start, r.unshared_params, r.sharing_ratio))
    t, rf = s.totals, s.totals.receptive_field
    w.writerow(_csv_row("total", "", t.output_shape, t.params, t.trainable_params, t.macs,
                        rf.size if rf else None, rf.jump if rf else None, rf.start if rf else None,
                        t.unshared_params, t.sharing_ratio))
    return buf.getvalue()
