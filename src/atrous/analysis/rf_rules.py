"""Receptive-field arithmetic along one axis: how (size, jump, start) pass through a layer.

Every unit i of a feature map along one axis sees a window of the input centred at
``start + i*jump`` and ``size`` pixels wide (input pixel p has its centre at coordinate p, so
the first pixel is at 0). The input itself is (size 1, jump 1, start 0). Through a sliding
window of ``kernel`` taps, ``dilation`` apart, with stride ``stride`` and ``pad_lo`` pixels
of padding before the first pixel (effective kernel ek = dilation*(kernel-1) + 1):

    size'  = size + (ek - 1) * jump
    jump'  = jump * stride
    start' = start + ((ek - 1)/2 - pad_lo) * jump

(Araujo, Norris & Sim, "Computing receptive fields of convolutional neural networks",
Distill 2019; Dumoulin & Visin's convolution arithmetic). Sizes are not clipped to the image:
a ResNet-18 unit "sees" 435 pixels of a 224-pixel image, most of them padding.

Branches that meet (a residual ``+``, a channel ``cat``) take the union: the window of unit i
is the smallest interval covering every branch's window of unit i.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Axis", "INPUT", "through_window", "through_global", "through_adaptive",
           "through_transposed", "through_offset", "union"]


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis: window ``size``, ``jump`` between neighbouring units'
    centres, and ``start``, the centre of unit 0, all in input pixels."""

    size: float
    jump: float
    start: float

    def window(self, i):
        """Inclusive input coordinates (first, last) covered by unit ``i`` (not clipped)."""
        centre = self.start + i * self.jump
        half = (self.size - 1) / 2
        return centre - half, centre + half


INPUT = Axis(1, 1, 0)


def through_window(a: Axis, kernel, stride=1, pad_lo=0, dilation=1) -> Axis:
    """A convolution or pooling window (see the module docstring for the formulas)."""
    ek = dilation * (kernel - 1) + 1
    return Axis(a.size + (ek - 1) * a.jump, a.jump * stride, a.start + ((ek - 1) / 2 - pad_lo) * a.jump)


def through_global(a: Axis, n) -> Axis:
    """An op that mixes all ``n`` units of the axis into one (flatten, global pooling, a
    Linear layer over a flattened map): a window as wide as the map, kernel = stride = n."""
    return through_window(a, n, n)


def through_adaptive(a: Axis, n, m):
    """Adaptive pooling from ``n`` to ``m`` units; PyTorch's bin i covers input units
    floor(i*n/m) .. ceil((i+1)*n/m) - 1. Returns (Axis, exact).

    When m divides n the bins are a pooling window (kernel = stride = n/m) and the result is
    exact. Otherwise the bins differ in width and spacing: the size reported is that of the
    widest bin, the jump the mean spacing n/m, the start the centre of bin 0.
    """
    if n % m == 0:
        return through_window(a, n // m, n // m), True
    widths = [-(-(i + 1) * n // m) - (i * n // m) for i in range(m)]
    first = -(-n // m)  # bin 0 is [0, ceil(n/m))
    return Axis(a.size + (max(widths) - 1) * a.jump, a.jump * n / m, a.start + (first - 1) / 2 * a.jump), False


def through_transposed(a: Axis, kernel, stride=1, pad_lo=0, dilation=1) -> Axis:
    """A transposed convolution (approximate): output unit o gathers input units i with
    i*stride - pad_lo + t*dilation = o for taps t, i.e. i in [(o + pad_lo - (ek-1))/stride,
    (o + pad_lo)/stride]; at most floor((ek-1)/stride) + 1 of them, whence the size bound.
    The jump shrinks by the stride; the start is the centre of unit 0's interval."""
    ek = dilation * (kernel - 1) + 1
    return Axis(a.size + ((ek - 1) // stride) * a.jump, a.jump / stride,
                a.start + (pad_lo - (ek - 1) / 2) / stride * a.jump)


def through_offset(a: Axis, first, step=1) -> Axis:
    """Taking every ``step``-th unit from unit ``first`` (a crop or strided slice); padding by
    ``p`` units is ``first = -p``. The window size does not change."""
    return Axis(a.size, a.jump * step, a.start + first * a.jump)


def union(branches, n) -> Axis:
    """The union of several branches' windows for a map of ``n`` units along this axis.

    ``branches`` is a list of ``(Axis, length)``; a branch of length 1 broadcast to ``n``
    units gives every unit the same window. The union of unit i's windows spans
    [min lo_b(i), max hi_b(i)]; its width is a convex function of i, so its largest value is
    at i = 0 or i = n - 1, and that largest width is reported (an upper bound that is exact
    when the branches share their jump, as residual additions and concatenations do).
    """
    if len(branches) == 1 and branches[0][1] == n:
        return branches[0][0]

    def box(i):
        lows, highs = zip(*(a.window(i if length == n else 0) for a, length in branches))
        return min(lows), max(highs)

    lo0, hi0 = box(0)
    lo1, hi1 = box(n - 1)
    size = max(hi0 - lo0, hi1 - lo1) + 1
    start = (lo0 + hi0) / 2
    if n > 1:
        jump = ((lo1 + hi1) / 2 - start) / (n - 1)
    else:
        jump = max(a.jump for a, _ in branches)
    return Axis(size, jump, start)
