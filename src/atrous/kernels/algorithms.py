"""Which convolution algorithm runs a given convolution: the list, the heuristic, the autotune.

Every algorithm computes the same three things as ``conv_gemm`` (the reference)::

    forward(x, w, stride, padding, dilation, groups)                -> y   (N, O, OH, OW)
    input_grad(gy, w, input_hw, stride, padding, dilation, groups)  -> gx  (N, C, H, W)
    weight_grad(x, gy, kernel, stride, padding, dilation, groups)   -> gw  (O, C/G, KH, KW)

and each applies to some convolutions only:

    ========================  =================================================================
    'gemm'                    every convolution (im2col + GEMM; 1x1 without columns)
    'gemm_nhwc'               groups 1: im2col + GEMM with channels-last columns
                              (``kernels.conv_nhwc``; faster copies and GEMMs for small layers)
    'mec'                     groups 1, vertical dilation 1: columns lowered along the width
                              only, one GEMM per output row over strided views (``kernels.mec``;
                              CIFAR-sized layers of 16-32 channels)
    'winograd'                3x3, stride 1, dilation 1, groups 1: F(2x2, 3x3)
    'winograd_f4'             the same convolutions: F(4x4, 3x3) (fewer multiplications, larger
                              rounding error; see benchmarks/conv_accuracy.py)
    'winograd_nhwc'           the same convolutions: F(4x4, 3x3) on channels-last tiles, every
                              transform vectorised over channels (``kernels.winograd_nhwc``);
                              y comes back channels last
    'winograd_nhwc_f2'        the same, F(2x2, 3x3)
    'space_to_batch'          dilated, stride 1, sizes and paddings multiples of the dilation:
                              the input's phases as one batch through an undilated convolution
                              (``kernels.space_to_batch``; TensorFlow's atrous_conv2d)
    'direct_depthwise'        groups == input channels, one input channel per group (any
                              channel multiplier): ``kernels.depthwise``, when it is installed
    'fft'                     stride 1, groups 1, kernels larger than 1x1: overlap-save FFT
                              tiles (``kernels.fft``); its cost hardly grows with the kernel
    ========================  =================================================================

Choice, for each call (``select``):

1. ``atrous.config.conv_algorithm`` names an algorithm: it runs wherever it applies, and
   'gemm' elsewhere (so forcing 'winograd' on a ResNet still runs its 1x1 and strided layers).
2. ``'auto'`` with ``atrous.config.conv_autotune`` true (like ``torch.backends.cudnn.benchmark``):
   the first call of each (op, shapes, dtype, stride, padding, dilation, groups) times every
   applicable algorithm and caches the fastest (``autotune_cache``, ``clear_autotune_cache``).
3. ``'auto'`` otherwise: ``heuristic`` on the shapes alone, and on whether the array lowered
   (x, or gy for the input gradient) already has its channels innermost (``atrous.layout``).
"""
from __future__ import annotations

import contextlib
import time

from ..backend import config
from ..layout import add_per_channel_, channels_last_order
from ._numba import enabled as numba_enabled
from . import conv_gemm, conv_nhwc, fft, mec, space_to_batch, winograd, winograd_nhwc

OPS = ("forward", "input_grad", "weight_grad")
AUTO = "auto"


def _depthwise():
    """The direct depthwise kernels, or None where that module is absent."""
    try:
        from . import depthwise
    except ImportError:
        return None
    return depthwise


# ----- the algorithms ------------------------------------------------------------------------
class Algorithm:
    """A name, where it applies, and its three operations (signatures as ``conv_gemm``)."""

    name = ""
    autotuned = True  # offered to the heuristic and the autotune
    fuses_bias = False  # forward takes bias= and adds it while writing y (else run() adds it)

    def applies(self, x_shape, w_shape, stride, padding, dilation, groups):
        raise NotImplementedError

    def forward(self, x, w, stride, padding, dilation, groups):
        raise NotImplementedError

    def input_grad(self, gy, w, input_hw, stride, padding, dilation, groups):
        raise NotImplementedError

    def weight_grad(self, x, gy, kernel, stride, padding, dilation, groups):
        raise NotImplementedError


class Gemm(Algorithm):
    name = "gemm"

    def applies(self, *geometry):
        return True

    def forward(self, x, w, stride, padding, dilation, groups):
        return conv_gemm.forward(x, w, stride, padding, dilation, groups, algorithm="gemm")

    def input_grad(self, gy, w, input_hw, stride, padding, dilation, groups):
        return conv_gemm.input_grad(gy, w, input_hw, stride, padding, dilation, groups, algorithm="gemm")

    def weight_grad(self, x, gy, kernel, stride, padding, dilation, groups):
        return conv_gemm.weight_grad(x, gy, kernel, stride, padding, dilation, groups, algorithm="gemm")


class Engine(Algorithm):
    """An algorithm that is a module of its own: ``supports(x_shape, w_shape, stride, padding,
    dilation, groups)`` and the three operations with ``conv_gemm``'s signatures."""

    def __init__(self, name, module):
        self.name, self.module = name, module

    def applies(self, *geometry):
        return self.module.supports(*geometry)

    def forward(self, x, w, stride, padding, dilation, groups):
        return self.module.forward(x, w, stride, padding, dilation, groups)

    def input_grad(self, gy, w, input_hw, stride, padding, dilation, groups):
        return self.module.input_grad(gy, w, input_hw, stride, padding, dilation, groups)

    def weight_grad(self, x, gy, kernel, stride, padding, dilation, groups):
        return self.module.weight_grad(x, gy, kernel, stride, padding, dilation, groups)


class Winograd(Algorithm):
    def __init__(self, name, m):
        self.name, self.m = name, m

    def applies(self, x_shape, w_shape, stride, padding, dilation, groups):
        return winograd.supports(w_shape, stride, dilation, groups)

    def forward(self, x, w, stride, padding, dilation, groups):
        return winograd.forward(x, w, padding, self.m)

    def input_grad(self, gy, w, input_hw, stride, padding, dilation, groups):
        return winograd.input_grad(gy, w, input_hw, padding, self.m)

    def weight_grad(self, x, gy, kernel, stride, padding, dilation, groups):
        return winograd.weight_grad(x, gy, padding, self.m)


class WinogradNHWC(Algorithm):
    def __init__(self, name, m):
        self.name, self.m = name, m

    def applies(self, *geometry):
        return winograd_nhwc.supports(*geometry)

    def forward(self, x, w, stride, padding, dilation, groups):
        return winograd_nhwc.forward(x, w, stride, padding, dilation, groups, m=self.m)

    def input_grad(self, gy, w, input_hw, stride, padding, dilation, groups):
        return winograd_nhwc.input_grad(gy, w, input_hw, stride, padding, dilation, groups, m=self.m)

    def weight_grad(self, x, gy, kernel, stride, padding, dilation, groups):
        return winograd_nhwc.weight_grad(x, gy, kernel, stride, padding, dilation, groups, m=self.m)


class DirectDepthwise(Algorithm):
    name = "direct_depthwise"
    fuses_bias = True

    def applies(self, x_shape, w_shape, stride, padding, dilation, groups):
        dw = _depthwise()
        return dw is not None and dw.is_depthwise(x_shape, w_shape, groups)

    def forward(self, x, w, stride, padding, dilation, groups, bias=None):
        return _depthwise().depthwise_forward(x, w, stride, padding, dilation, bias=bias)

    def input_grad(self, gy, w, input_hw, stride, padding, dilation, groups):
        x_shape = (gy.shape[0], w.shape[1] * groups) + tuple(input_hw)
        return _depthwise().depthwise_input_grad(gy, w, x_shape, stride, padding, dilation)

    def weight_grad(self, x, gy, kernel, stride, padding, dilation, groups):
        w_shape = (gy.shape[1], x.shape[1] // groups) + tuple(kernel)
        return _depthwise().depthwise_weight_grad(x, gy, w_shape, stride, padding, dilation)


class FFT(Engine):
    def __init__(self):
        super().__init__("fft", fft)

    def applies(self, x_shape, w_shape, stride, padding, dilation, groups):
        # kernels.fft computes grouped convolutions too, but their per-frequency GEMMs are tiny
        # (O/G, C/G) matrices; a 1x1 kernel is a plain GEMM already.
        return (fft.supports(x_shape, w_shape, stride, padding, dilation, groups) and groups == 1
                and w_shape[2] * w_shape[3] > 1)


ALGORITHMS = {
    a.name: a
    for a in (Gemm(), Engine("gemm_nhwc", conv_nhwc), Engine("mec", mec), Winograd("winograd", 2), Winograd("winograd_f4", 4),
              WinogradNHWC("winograd_nhwc", 4), WinogradNHWC("winograd_nhwc_f2", 2), DirectDepthwise(), FFT(),
              Engine("space_to_batch", space_to_batch))
}


def names():
    """The algorithm names ``atrous.config.conv_algorithm`` accepts, 'auto' first."""
    return (AUTO,) + tuple(ALGORITHMS)


@contextlib.contextmanager
def use_algorithm(name):
    """Run the block with ``atrous.config.conv_algorithm = name``; the old value comes back after.

    >>> with use_algorithm("gemm"):
    ...     config.conv_algorithm
    'gemm'
    """
    if name not in names():
        raise ValueError(f"use_algorithm: name must be one of {names()}, got {name!r}")
    old = config.conv_algorithm
    config.conv_algorithm = name
    try:
        yield
    finally:
        config.conv_algorithm = old


# ----- geometry and keys ---------------------------------------------------------------------
def _geometry(op, a, b, extra, stride, padding, dilation, groups):
    """(x_shape, w_shape) of the convolution behind one call of ``op``."""
    if op == "forward":  # a = x, b = w
        return tuple(a.shape), tuple(b.shape)
    if op == "input_grad":  # a = gy, b = w, extra = input_hw
        return (a.shape[0], b.shape[1] * groups) + tuple(extra), tuple(b.shape)
    # weight_grad: a = x, b = gy, extra = kernel
    return tuple(a.shape), (b.shape[1], a.shape[1] // groups) + tuple(extra)


def _key(op, x_shape, w_shape, dtype, stride, padding, dilation, groups, channels_last=False):
    norm = (tuple(stride), tuple(map(tuple, padding)), tuple(dilation), int(groups))
    return (op, x_shape, w_shape, str(dtype)) + norm + (("channels_last",) if channels_last else ())


# ----- the heuristic -------------------------------------------------------------------------
# Winograd on channels-last tiles (``kernels.winograd_nhwc``) vectorises its transforms over the
# channels, which pays off from 64 channels on both sides: with 2 threads and numba
# (benchmarks/conv_layers.py --algorithm winograd_nhwc), forward+backward took 0.6-0.9x PyTorch's
# time on the 28- and 14-pixel ResNet layers where GEMM took 0.9-1.2x, and 1.1x on the 56-pixel
# one against GEMM's 1.2-1.7x. Below 64 channels its per-tile loops are too short (a
# 16-channel CIFAR layer ran 2x slower than MEC). F(4x4) wins up to 128 channels (fewer values
# transformed per output pixel); from 256 channels the GEMMs dominate, and F(2x2)'s four times
# as many tiles make better-shaped ones (0.8 vs 0.9x PyTorch at 14x14, 1.0 vs 1.1x at 7x7).
# The NCHW Winograd module stays for forcing and as a second reference.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_F2_MIN_CHANNELS = 256
# Channels-last columns win where the images are small: im2col's copies of NCHW runs of OW
# values get slow and the GEMMs are short. With 2 threads (benchmarks/conv_layers.py, CIFAR
# ResNet layers at batch 32) forward+backward took 0.45-0.6x 'gemm''s time at 8x8 and 0.8x at
# 16x16, level at 14x14 with 256 channels, and 1.1-1.4x at 32x32 and 56x56: up to
# NHWC_MAX_PIXELS input pixels then. With fewer than NHWC_MIN_CHANNELS channels its copied runs
# (KW*C values) are shorter than NCHW's (a 3-channel 32x32 image measured 4-8x slower there).
# Given an input whose channels are already innermost (``atrous.layout``: the output of a
# channels-last convolution), the transposes are gone and 'gemm_nhwc' wins at every size
# measured: forward+backward 0.64-0.75x 'gemm''s time on the 56/28-pixel ResNet layers, the
# strided 56-pixel one, and 64-128 channel CIFAR-sized layers; even at (8, 512, 7, 7).
NHWC_MAX_PIXELS = 256
NHWC_MAX_CHANNELS = 256
NHWC_MIN_CHANNELS = 16
# MEC's lowered array is KH times smaller than the columns and its GEMMs read it in place, so it
# beats both column layouts where the columns are large next to the GEMM work: few channels on
# images of up to MEC_MAX_WIDTH columns. Interleaved forward+backward with 2 threads: 0.70x
# 'gemm''s time on (32, 16, 32, 32) x 16, 0.80-0.87x 'gemm_nhwc''s on 16x16 and 28x28 layers of
# 32 channels, 0.85-0.92x at 32x32 with 16/32 channels; level at 64 channels, and slower
# (1.0-1.3x) on 56- and 112-pixel-wide images, whose lowered rows span more memory.
MEC_MAX_CHANNELS = 32
MEC_MAX_WIDTH = 32


# FFT's cost hardly depends on the number of taps, GEMM's grows with it: benchmarks/fft_conv.py
# measured FFT at 0.02-0.35x GEMM's time for 7x7..15x15 kernels with >= 16 channels, mixed at
# 5x5, 1.5-3x slower at 3x3; with 3 input channels the forward was even (0.7-1.6x).
FFT_MIN_TAPS = 49
FFT_MIN_CHANNELS = 16


def heuristic(op, x_shape, w_shape, stride, padding, dilation, groups, channels_last=False):
    """The algorithm chosen from the shapes alone (no timing), and whether the array the
    operation lowers (x, or gy for the input gradient) has its channels innermost."""
    geometry = (x_shape, w_shape, stride, padding, dilation, groups)
    if ALGORITHMS["direct_depthwise"].applies(*geometry):
        return "direct_depthwise"
    if (ALGORITHMS["fft"].applies(*geometry) and w_shape[2] * w_shape[3] >= FFT_MIN_TAPS
            and min(x_shape[1], w_shape[0]) >= FFT_MIN_CHANNELS):
        return "fft"
    channels = min(x_shape[1], w_shape[0])
    winograd_ok = groups == 1 and tuple(w_shape[2:]) == (3, 3) and channels >= WINOGRAD_MIN_CHANNELS and numba_enabled()
    if winograd_ok and ALGORITHMS["space_to_batch"].applies(*geometry):
        return "space_to_batch"  # its phases are undilated 3x3 convolutions: Winograd's
    if winograd_ok and ALGORITHMS["winograd_nhwc"].applies(*geometry):
        return "winograd_nhwc_f2" if channels >= WINOGRAD_F2_MIN_CHANNELS else "winograd_nhwc"
    pointwise = tuple(w_shape[2:]) == (1, 1)
    # the channels its im2col copies: x's, or gy's for the input gradient
    copied = w_shape[0] if op == "input_grad" else x_shape[1]
    if (ALGORITHMS["mec"].applies(*geometry) and not pointwise and copied >= NHWC_MIN_CHANNELS
            and max(x_shape[1], w_shape[0]) <= MEC_MAX_CHANNELS and x_shape[3] <= MEC_MAX_WIDTH):
        return "mec"
    small = max(x_shape[1], w_shape[0]) <= NHWC_MAX_CHANNELS and x_shape[2] * x_shape[3] <= NHWC_MAX_PIXELS
    if groups == 1 and not pointwise and (small or channels_last) and copied >= NHWC_MIN_CHANNELS:
        return "gemm_nhwc"
    return "gemm"


# ----- the autotune --------------------------------------------------------------------------
_cache: dict = {}
AUTOTUNE_REPEATS = 2  # timed runs per algorithm after one untimed warm-up; the fastest counts


def autotune_cache():
    """A copy of the autotune results: {(op, x_shape, w_shape, dtype, stride, padding,
    dilation, groups): algorithm name}."""
    return dict(_cache)


def clear_autotune_cache():
    _cache.clear()


def _autotune(op, key, candidates, args):
    best, best_t, result = None, None, None
    for name in candidates:
        fn = getattr(ALGORITHMS[name], op)
        out = fn(*args)  # warm-up; also the result if this one wins
        t = None
        for _ in range(AUTOTUNE_REPEATS):
            t0 = time.perf_counter()
            fn(*args)
            dt = time.perf_counter() - t0
            t = dt if t is None else min(t, dt)
        if best_t is None or t < best_t:
            best, best_t, result = name, t, out
    _cache[key] = best
    return best, result


# ----- dispatch ------------------------------------------------------------------------------
def select(op, x_shape, w_shape, dtype, stride, padding, dilation, groups, channels_last=False):
    """The algorithm name for one call, without running anything (autotune results are used
    when cached; a miss falls back to the heuristic). ``channels_last``: whether the array the
    operation lowers (x, or gy for the input gradient) has its channels innermost."""
    geometry = (x_shape, w_shape, stride, padding, dilation, groups)
    forced = config.conv_algorithm
    if forced != AUTO:
        if forced not in ALGORITHMS:
            raise ValueError(
                f"conv2d: atrous.config.conv_algorithm must be one of {names()}, got {forced!r}"
            )
        return forced if ALGORITHMS[forced].applies(*geometry) else "gemm"
    if getattr(config, "conv_autotune", False):
        cached = _cache.get(_key(op, x_shape, w_shape, dtype, stride, padding, dilation, groups, channels_last))
        if cached is not None:
            return cached
    return heuristic(op, *geometry, channels_last=channels_last)


def _add_bias(y, bias):
    if bias is not None:
        add_per_channel_(y, bias)  # y may have its channels innermost (atrous.layout)
    return y


def run(op, a, b, extra, stride, padding, dilation, groups, bias=None):
    """Run ``op`` ('forward', 'input_grad' or 'weight_grad') by the selected algorithm.

    ``bias`` (forward only): added to y, by the algorithm as it writes y where it can
    (``fuses_bias``), else afterwards; the same float additions either way."""
    x_shape, w_shape = _geometry(op, a, b, extra, stride, padding, dilation, groups)
    geometry = (x_shape, w_shape, stride, padding, dilation, groups)
    args = (a, b) + (() if op == "forward" else (extra,)) + (stride, padding, dilation, groups)
    cl = channels_last_order(a) is not None  # x, or gy for the input gradient
    if config.conv_algorithm == AUTO and getattr(config, "conv_autotune", False):
        key = _key(op, x_shape, w_shape, a.dtype, stride, padding, dilation, groups, cl)
        if key not in _cache:
            candidates = [n for n, alg in ALGORITHMS.items() if alg.autotuned and alg.applies(*geometry)]
            if len(candidates) > 1:
                return _add_bias(_autotune(op, key, candidates, args)[1], bias)
            _cache[key] = candidates[0]
    alg = ALGORITHMS[select(op, x_shape, w_shape, a.dtype, stride, padding, dilation, groups, cl)]
    if bias is not None and alg.fuses_bias:
        return alg.forward(*args, bias=bias)
    return _add_bias(getattr(alg, op)(*args), bias)


def run_forward(x, w, b, stride, padding, dilation, groups):
    """y = conv(x, w) + b (``b`` (O,) or None): a conv2d forward step. The depthwise kernel adds
    the bias while it writes y, one pass less over y (measured 2.48 -> 1.97 ms on (8, 128, 56,
    56)); for the GEMM engines the same in their output copies measured no gain, so they add
    it afterwards."""
    return run("forward", x, w, None, stride, padding, dilation, groups, bias=b)


def run_backward(x, gy, w, stride, padding, dilation, groups, need_x, need_w):
    """(gx or None, gw or None) of y = conv(x, w) given gy = dL/dy: a conv2d backward step.

    Where the algorithm selected for the input gradient is 'direct_depthwise' and both
    gradients are wanted, ``depthwise.depthwise_backward`` computes them together in one pass
    over gy and x; otherwise each is ``run('input_grad', ...)`` / ``run('weight_grad', ...)``.
    """
    if need_x and need_w:
        name = select("input_grad", tuple(x.shape), tuple(w.shape), gy.dtype, stride, padding, dilation, groups,
                      channels_last_order(gy) is not None)
        if name == "direct_depthwise":
            return _depthwise().depthwise_backward(x, gy, w, stride, padding, dilation)
    gx = run("input_grad", gy, w, tuple(x.shape[2:]), stride, padding, dilation, groups) if need_x else None
    gw = run("weight_grad", x, gy, tuple(w.shape[2:]), stride, padding, dilation, groups) if need_w else None
    return gx, gw


__all__ = [
    "ALGORITHMS", "OPS", "names", "use_algorithm", "heuristic", "select", "run", "run_forward", "run_backward",
    "autotune_cache", "clear_autotune_cache",
]
