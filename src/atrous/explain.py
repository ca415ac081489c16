"""The arithmetic of one convolution, printed step by step (``atrous explain conv``).

A tiny input of small integers and a few integer filters, so every number can be checked by
hand: the input channels, the im2col matrix (one column per output position, rows in Caffe's
order c0.k(0,0), c0.k(0,1), ..., c1.k(0,0), ...), the weight matrix (one filter per row, in
the same order), their product reshaped to the output maps, and a check against ``conv2d``.

    >>> ex = explain_conv((4, 4, 3), kernel_size=3, filters=2, seed=0)
    >>> ex.columns.shape, ex.weight_matrix.shape, ex.output.shape
    ((27, 4), (2, 27), (2, 2, 2))
    >>> ex.matches_conv2d
    True
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from .shape import conv_output_size, effective_kernel, pair

__all__ = ["ConvExplanation", "explain_conv", "parse_hwc", "row_labels"]


def parse_hwc(text):
    """``"4x4x3"`` -> (4, 4, 3): height x width x channels, the notation of 227x227x3.

    ``"5x5"`` means one channel.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
    dims = (int(m[1]), int(m[2]), int(m[3] or 1)) if m else ()
    if not dims or min(dims) < 1:
        raise ValueError(f"explain: input must look like HxWxC (e.g. 4x4x3) or HxW, got {text!r}")
    return dims


def row_labels(channels, kernel_size):
    """Names of the im2col rows in Caffe's order: ``c{c}.k({kh},{kw})``, channel-major."""
    KH, KW = pair(kernel_size, "kernel_size", "explain")
    return [f"c{c}.k({kh},{kw})" for c in range(channels) for kh in range(KH) for kw in range(KW)]


@dataclasses.dataclass
class ConvExplanation:
    """One worked convolution. Arrays are int64 except ``reference`` (conv2d's float64 output).

    x:             (C, H, W)           the input
    weight:        (O, C, KH, KW)      the filters
    columns:       (C*KH*KW, OH*OW)    im2col of x (row c*KH*KW + kh*KW + kw, column oh*OW + ow)
    weight_matrix: (O, C*KH*KW)        weight.reshape(O, -1)
    product:       (O, OH*OW)          weight_matrix @ columns
    output:        (O, OH, OW)         product.reshape(O, OH, OW)
    reference:     (O, OH, OW)         atrous.functional.conv2d(x, weight) with the same options
    """

    x: np.ndarray
    weight: np.ndarray
    stride: tuple
    padding: tuple
    dilation: tuple
    columns: np.ndarray
    weight_matrix: np.ndarray
    product: np.ndarray
    output: np.ndarray
    reference: np.ndarray

    @property
    def out_hw(self):
        return self.output.shape[1:]

    @property
    def matches_conv2d(self):
        return bool(np.array_equal(self.output, self.reference))

    def row_labels(self):
        return row_labels(self.x.shape[0], self.weight.shape[2:])

    def column_labels(self):
        OH, OW = self.out_hw
        return [f"({i},{j})" for i in range(OH) for j in range(OW)]

    def padded_input(self):
        (ph, pw) = self.padding
        return np.pad(self.x, ((0, 0), (ph, ph), (pw, pw)))

    def format(self):
        """The whole walk-through as text (what ``atrous explain conv`` prints)."""
        return "\n".join(_format(self))


def explain_conv(input_shape=(4, 4, 3), kernel_size=3, stride=1, padding=0, dilation=1,
                 filters=2, seed=0, low=0, high=4):
    """Build a worked example: integer input ``(H, W, C)`` in [low, high], filters in {-1, 0, 1}.

    The im2col matrix is built here from the arithmetic (tap (kh, kw) of window (oh, ow) reads
    padded pixel (oh*SH + kh*DH, ow*SW + kw*DW)), then checked against the library's
    ``conv2d``; with integers the two agree exactly.
    """
    from . import functional as F

    H, W, C = input_shape if not isinstance(input_shape, str) else parse_hwc(input_shape)
    KH, KW = pair(kernel_size, "kernel_size", "explain")
    SH, SW = pair(stride, "stride", "explain")
    PH, PW = pair(padding, "padding", "explain")
    DH, DW = pair(dilation, "dilation", "explain")
    if min(KH, KW, SH, SW, DH, DW, filters) < 1 or min(PH, PW) < 0:
        raise ValueError(
            f"explain: kernel, stride, dilation and filters must be >= 1 and padding >= 0; got "
            f"kernel={(KH, KW)}, stride={(SH, SW)}, dilation={(DH, DW)}, padding={(PH, PW)}, "
            f"filters={filters}"
        )
    OH = conv_output_size(H, KH, SH, PH, DH)
    OW = conv_output_size(W, KW, SW, PW, DW)
    if OH < 1 or OW < 1:
        raise ValueError(
            f"explain: a {effective_kernel(KH, DH)}x{effective_kernel(KW, DW)} window (kernel "
            f"{KH}x{KW}, dilation {(DH, DW)}) does not fit the {H}x{W} input padded by {(PH, PW)}"
        )
    rng = np.random.default_rng(seed)
    x = rng.integers(low, high + 1, size=(C, H, W))
    weight = rng.integers(-1, 2, size=(filters, C, KH, KW))

    padded = np.pad(x, ((0, 0), (PH, PH), (PW, PW)))
    columns = np.empty((C * KH * KW, OH * OW), dtype=np.int64)
    for kh in range(KH):
        for kw in range(KW):
            # All windows' tap (kh, kw) at once: a strided slice, shape (C, OH, OW).
            tap = padded[:, kh * DH : kh * DH + SH * (OH - 1) + 1 : SH,
                            kw * DW : kw * DW + SW * (OW - 1) + 1 : SW]
            columns[kh * KW + kw :: KH * KW] = tap.reshape(C, OH * OW)
    weight_matrix = weight.reshape(filters, -1)
    product = weight_matrix @ columns
    reference = F.conv2d(x[None].astype(np.float64), weight.astype(np.float64),
                         stride=(SH, SW), padding=(PH, PW), dilation=(DH, DW)).numpy()[0]
    return ConvExplanation(
        x=x, weight=weight, stride=(SH, SW), padding=(PH, PW), dilation=(DH, DW),
        columns=columns, weight_matrix=weight_matrix, product=product,
        output=product.reshape(filters, OH, OW), reference=reference,
    )


# ----- text --------------------------------------------------------------------------------
def _grid(a, width):
    return [" ".join(f"{v:>{width}d}" for v in row) for row in a]


def _side_by_side(titles, grids, gap=4):
    """Several small integer grids next to each other under their titles."""
    width = max(len(f"{int(v)}") for g in grids for v in g.ravel())
    blocks = [_grid(g, width) for g in grids]
    cols = [max(len(t), len(b[0])) for t, b in zip(titles, blocks)]
    sep = " " * gap
    lines = [sep.join(t.ljust(c) for t, c in zip(titles, cols))]
    for r in range(max(len(b) for b in blocks)):
        lines.append(sep.join((b[r] if r < len(b) else "").ljust(c) for b, c in zip(blocks, cols)).rstrip())
    return lines


def _format(ex):
    C, H, W = ex.x.shape
    O, _, KH, KW = ex.weight.shape
    OH, OW = ex.out_hw
    K = C * KH * KW
    (PH, PW), (SH, SW), (DH, DW) = ex.padding, ex.stride, ex.dilation
    opts = f"stride {SH if SH == SW else (SH, SW)}, padding {PH if PH == PW else (PH, PW)}"
    if (DH, DW) != (1, 1):
        opts += f", dilation {DH if DH == DW else (DH, DW)}"
    out = [
        f"Convolution of a {H}x{W}x{C} input with {O} filter{'s' if O > 1 else ''} of "
        f"{KH}x{KW}x{C} ({opts})",
        "output size: out = (in + 2*pad - dilation*(k-1) - 1) // stride + 1",
        f"  rows:    ({H} + 2*{PH} - {DH}*{KH - 1} - 1) // {SH} + 1 = {OH}",
        f"  columns: ({W} + 2*{PW} - {DW}*{KW - 1} - 1) // {SW} + 1 = {OW}",
        "",
    ]
    title = "input channels" + (f" (zero-padded by {(PH, PW) if PH != PW else PH})" if PH or PW else "")
    out.append(title + ":")
    out += ["  " + s for s in _side_by_side([f"c{c}" for c in range(C)], list(ex.padded_input()))]
    out.append("")
    out.append(f"filters ({O} x {C} x {KH} x {KW}):")
    for o in range(O):
        out += ["  " + s for s in _side_by_side([f"filter {o}, c{c}" for c in range(C)], list(ex.weight[o]))]
    out.append("")

    # im2col: one row per (channel, tap), one column per output position.
    labels = ex.row_labels()
    lw = max(len(s) for s in labels)
    cols = ex.column_labels()
    cw = max(max(len(s) for s in cols), max(len(str(int(v))) for v in ex.columns.ravel()))
    out.append(f"im2col matrix X_col ({K} x {OH * OW}): column j = the window of output position "
               f"(j // {OW}, j % {OW}), flattened channel by channel, then kernel row, then column")
    out.append(" " * (lw + 4) + " ".join(s.rjust(cw) for s in cols))
    for label, row in zip(labels, ex.columns):
        out.append(f"  {label.ljust(lw)}  " + " ".join(f"{int(v):>{cw}d}" for v in row))
    out.append("")

    out.append(f"weight matrix W_row ({O} x {K}): each filter flattened in the same order "
               f"('|' separates channels)")
    ww = max(len(str(int(v))) for v in ex.weight_matrix.ravel())
    for o, row in enumerate(ex.weight_matrix):
        chunks = [" ".join(f"{int(v):>{ww}d}" for v in row[c * KH * KW : (c + 1) * KH * KW]) for c in range(C)]
        out.append(f"  filter {o}:  " + " | ".join(chunks))
    out.append("")

    out.append(f"product W_row @ X_col ({O} x {K}) @ ({K} x {OH * OW}) = ({O} x {OH * OW}):")
    pw = max(cw, max(len(str(int(v))) for v in ex.product.ravel()))
    out.append(" " * 13 + " ".join(s.rjust(pw) for s in cols))
    for o, row in enumerate(ex.product):
        out.append(f"  filter {o}:  " + " ".join(f"{int(v):>{pw}d}" for v in row))
    o0, j0 = 0, 0
    terms = [f"{int(a)}*{int(b)}" for a, b in zip(ex.weight_matrix[o0], ex.columns[:, j0])]
    out.append(f"  e.g. filter 0 at {cols[0]}: " + " + ".join(terms[:9])
               + (" + ..." if K > 9 else "") + f" = {int(ex.product[o0, j0])}")
    out.append("")

    out.append(f"reshaped to the output maps ({O} x {OH} x {OW}):")
    out += ["  " + s for s in _side_by_side([f"map {o}" for o in range(O)], list(ex.output))]
    out.append("")
    diff = float(np.max(np.abs(ex.output - ex.reference)))
    verdict = "equal" if ex.matches_conv2d else "DIFFERENT"
    out.append(f"check: atrous.functional.conv2d gives the same maps: {verdict} "
               f"(max |difference| {diff:g})")
    return out
