"""Shape ops: ``flatten``, ``pad``, ``cat``, ``stack`` and ``interpolate``, with gradients.

Every op here is a gather: each output element is one input element (``flatten``, ``pad``,
``cat``, ``stack``, nearest ``interpolate``) or a weighted sum of two per axis (bilinear). The
gathers along one axis use an index array built from the shapes; their backward is the
matching scatter-add, ``_scatter_axis``, which adds gradients for repeated indices in rounds
so that no index repeats within a round (a replicate pad of p repeats the edge p+1 times: p+1
rounds; a 2x nearest upsample: 2 rounds). No loop ever runs over pixels.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import ops
from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor, as_tensor

__all__ = ["flatten", "pad", "cat", "stack", "interpolate"]


# ----- helpers ------------------------------------------------------------------------------
def _normalize_dim(op, name, dim, ndim):
    """``dim`` in ``[-ndim, ndim)`` mapped to ``[0, ndim)``, or an IndexError-style message."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {dim!r}")
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1  # a 0-d tensor accepts dims 0 and -1, as PyTorch
    if not lo <= dim <= hi:
        raise ValueError(f"{op}: {name}={dim} is out of range for a {ndim}-D input (expected {lo}..{hi})")
    return int(dim) % max(ndim, 1)


def _rounds(index):
    """Split positions 0..len(index)-1 into groups in which no value of ``index`` repeats.

    Position o goes to round r when it is the r-th occurrence of ``index[o]``.
    """
    index = np.asarray(index)
    if index.size == 0:
        return []
    order = np.argsort(index, kind="stable")
    sorted_idx = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    counts = np.diff(np.r_[starts, index.size])
    rank = np.arange(index.size) - np.repeat(starts, counts)
    return [order[rank == r] for r in range(int(counts.max()))]


def _scatter_axis(g, index, size, axis, weight=None):
    """Adjoint of ``take(x, index, axis) * weight``: out[.., index[o], ..] += g[.., o, ..] * weight[o]."""
    xp = get_array_module(g)
    g = xp.moveaxis(g, axis, -1)
    if weight is not None:
        g = g * xp.asarray(weight)
    out = xp.zeros(g.shape[:-1] + (size,), dtype=g.dtype)
    for sel in _rounds(index):  # within one round the targets are distinct, so += is exact
        out[..., xp.asarray(index[sel])] += g[..., xp.asarray(sel)]
    return xp.moveaxis(out, -1, axis)


# ----- flatten ------------------------------------------------------------------------------
def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.flatten`` (default: all of them).

    Shape: (*lead, d_s, ..., d_e, *trail) -> (*lead, d_s * ... * d_e, *trail); a 0-d input
    becomes (1,). (``nn.Flatten`` defaults to ``start_dim=1``, keeping the batch dimension.)

    >>> flatten(np.zeros((2, 3, 4, 5), np.float32), 1).shape
    (2, 60)
    """
    x = as_tensor(input)
    s = _normalize_dim("flatten", "start_dim", start_dim, x.ndim)
    e = _normalize_dim("flatten", "end_dim", end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} for a {x.ndim}-D input")
    if x.ndim == 0:
        return ops.Reshape.apply(x, shape=(1,))
    merged = math.prod(x.shape[s : e + 1])
    return ops.Reshape.apply(x, shape=x.shape[:s] + (merged,) + x.shape[e + 1 :])


# ----- pad ----------------------------------------------------------------------------------
def _pad_index(n, lo, hi, mode):
    """Source index along one axis for every output position of a reflect/replicate/circular pad."""
    j = np.arange(-lo, n + hi)  # output position o reads input position j = o - lo before folding
    if mode == "reflect":  # mirror about the edge pixels, which are not repeated
        j = np.abs(j)
        return np.where(j > n - 1, 2 * (n - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    # circular, as PyTorch: negative pads crop first, then positive pads wrap around the
    # cropped length m (so (-1, 2) on [0, 1, 2, 3] gives [1, 2, 3, 1, 2]).
    start, m = max(-lo, 0), n - max(-lo, 0) - max(-hi, 0)
    return np.arange(-max(lo, 0), m + max(hi, 0)) % m + start


class Pad(Function):
    def forward(self, x, pad, mode, value):
        xp = get_array_module(x)
        self.shape, self.mode = x.shape, mode
        # pad lists the last dimension first: (left, right, top, bottom, front, back).
        self.axes = [(x.ndim - 1 - k, pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)]
        if mode == "constant":
            out_shape = list(x.shape)
            src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
            for ax, lo, hi in self.axes:
                n = x.shape[ax]
                out_shape[ax] = n + lo + hi
                # Negative pads crop: copy input[-lo : n + hi] to out[lo : ...] clipped at 0.
                a, b = max(-lo, 0), n - max(-hi, 0)
                src[ax] = slice(a, max(a, b))
                dst[ax] = slice(max(lo, 0), max(lo, 0) + max(b - a, 0))
            self.src, self.dst = tuple(src), tuple(dst)
            out = xp.full(out_shape, value, dtype=x.dtype)
            out[self.dst] = x[self.src]
            return out
        self.index = [(ax, _pad_index(x.shape[ax], lo, hi, mode)) for ax, lo, hi in self.axes]
        out = x
        for ax, idx in self.index:
            out = xp.take(out, xp.asarray(idx), axis=ax)
        return out

    def backward(self, g):
        xp = get_array_module(g)
        if self.mode == "constant":
            gx = xp.zeros(self.shape, dtype=g.dtype)
            gx[self.src] = g[self.dst]
            return (gx,)
        # Undo the per-axis gathers in reverse order; border pixels collect several gradients.
        for ax, idx in reversed(self.index):
            g = _scatter_axis(g, idx, self.shape[ax], ax)
        return (g,)


def pad(input, pad, mode="constant", value=None):
    """Pad (or, with negative amounts, crop) the trailing dimensions, as ``F.pad``.

    ``pad`` lists the last dimension first: ``(left, right)`` pads W, ``(left, right, top,
    bottom)`` pads W and H, a third pair pads D. ``mode``: 'constant' (fill with ``value``,
    default 0, any rank), 'reflect' (mirror without repeating the edge; each pad < size),
    'replicate' (repeat the edge) or 'circular' (wrap around; negative pads crop first, and
    each positive pad is at most the cropped size). The last three pad 1, 2 or 3 trailing
    dims of a 2-3-D, 3-4-D or 4-5-D input, as PyTorch, and leave every dim at least 1 long.

    Shape: each padded dim n becomes n + lo + hi; the others are unchanged.

    >>> pad(np.ones((1, 1, 2, 2), np.float32), (1, 1, 0, 2)).shape
    (1, 1, 4, 4)
    """
    x = as_tensor(input)
    if isinstance(pad, (str, bytes)) or not hasattr(pad, "__len__"):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad):
        raise TypeError(f"pad: pad must be a tuple of ints, got {tuple(pad)!r}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise ValueError(f"pad: pad length must be divisible by 2, got {len(pad)} ({pad})")
    k = len(pad) // 2
    if k > x.ndim:
        raise ValueError(
            f"pad: pad of length {len(pad)} pads {k} dims but the input is {x.ndim}-D with shape {x.shape}"
        )
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    dims = [(x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(k)]
    if mode == "constant":
        for ax, lo, hi in dims:
            if x.shape[ax] + lo + hi < 0:
                raise ValueError(
                    f"pad: padding ({lo}, {hi}) of dim {ax} (size {x.shape[ax]}) of input {x.shape} "
                    f"gives a negative size {x.shape[ax] + lo + hi}"
                )
        return Pad.apply(x, pad=pad, mode=mode, value=0 if value is None else value)
    if value is not None:
        raise ValueError(f"pad: mode {mode!r} does not take a value argument, got value={value!r}")
    if k not in (1, 2, 3) or not k + 1 <= x.ndim <= k + 2:
        raise ValueError(
            f"pad: mode {mode!r} with a pad of length {len(pad)} needs a {k + 1}-D or {k + 2}-D input, "
            f"got {x.ndim}-D with shape {x.shape}"
        )
    for ax, lo, hi in dims:
        n = x.shape[ax]
        if n == 0 or n + lo + hi < 1:
            raise ValueError(
                f"pad: mode {mode!r}: dim {ax} of input {x.shape} (size {n}) padded by ({lo}, {hi}) "
                f"would have size {n + lo + hi}; it must be at least 1"
            )
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"pad: mode 'reflect' needs each pad less than the size of its dim, got ({lo}, {hi}) "
                f"for dim {ax} of size {n} (input shape {x.shape})"
            )
        cropped = n - max(-lo, 0) - max(-hi, 0)
        if mode == "circular" and max(lo, hi) > cropped:
            raise ValueError(
                f"pad: mode 'circular' would wrap around more than once: pad ({lo}, {hi}) for dim {ax} "
                f"of size {n} (input shape {x.shape}; {cropped} left after cropping)"
            )
    return Pad.apply(x, pad=pad, mode=mode, value=None)


# ----- cat and stack ------------------------------------------------------------------------
class Cat(Function):
    def forward(self, *arrays, axis):
        xp = get_array_module(*arrays)
        self.axis, self.dtypes = axis, [a.dtype for a in arrays]
        self.bounds = np.cumsum([0] + [a.shape[axis] for a in arrays])
        return xp.concatenate(arrays, axis=axis)

    def backward(self, g):
        grads = []
        for i, need in enumerate(self.needs_input_grad):
            if not need:
                grads.append(None)
                continue
            sl = [slice(None)] * g.ndim
            sl[self.axis] = slice(int(self.bounds[i]), int(self.bounds[i + 1]))
            grads.append(g[tuple(sl)].astype(self.dtypes[i], copy=True))
        return tuple(grads)


class Stack(Function):
    def forward(self, *arrays, axis):
        xp = get_array_module(*arrays)
        self.axis, self.dtypes = axis, [a.dtype for a in arrays]
        return xp.stack(arrays, axis=axis)

    def backward(self, g):
        lead = (slice(None),) * self.axis
        return tuple(
            g[lead + (i,)].astype(self.dtypes[i], copy=True) if need else None
            for i, need in enumerate(self.needs_input_grad)
        )


def _as_tensor_list(op, tensors):
    if isinstance(tensors, (Tensor, np.ndarray)) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{op}: tensors must be a list or tuple of arrays/Tensors, got {type(tensors).__name__}")
    ts = [as_tensor(t) for t in tensors]
    if not ts:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    return ts


def cat(tensors, dim=0):
    """Concatenate along an existing dimension ``dim``, as ``torch.cat``.

    Shape: inputs agree in every dim but ``dim``; the output's ``dim`` is the sum of theirs.
    Arrays and Tensors may be mixed (arrays are constants); gradients are split back.

    >>> cat([np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)]).shape
    (3, 3)
    """
    ts = _as_tensor_list("cat", tensors)
    ref = ts[0]
    for i, t in enumerate(ts):
        if t.ndim == 0:
            raise ValueError(f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated")
        if t.ndim != ref.ndim:
            raise ValueError(
                f"cat: tensors must have the same number of dimensions, but tensor 0 has shape "
                f"{ref.shape} and tensor {i} has shape {t.shape}"
            )
    axis = _normalize_dim("cat", "dim", dim, ref.ndim)
    for i, t in enumerate(ts):
        if any(a != b for d, (a, b) in enumerate(zip(ref.shape, t.shape)) if d != axis):
            raise ValueError(
                f"cat: sizes must match except in dim {axis}, but tensor 0 has shape {ref.shape} "
                f"and tensor {i} has shape {t.shape}"
            )
    return Cat.apply(*ts, axis=axis)


def stack(tensors, dim=0):
    """Join equal-shaped tensors along a new dimension ``dim``, as ``torch.stack``.

    Shape: k inputs of shape S -> S with k inserted at ``dim`` (``dim`` in [-(ndim+1), ndim]).

    >>> stack([np.zeros((2, 3), np.float32)] * 4, dim=1).shape
    (2, 4, 3)
    """
    ts = _as_tensor_list("stack", tensors)
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ValueError(
                f"stack: expects each tensor to be equal size, but tensor 0 has shape {ts[0].shape} "
                f"and tensor {i} has shape {t.shape}"
            )
    axis = _normalize_dim("stack", "dim", dim, ts[0].ndim + 1)
    return Stack.apply(*ts, axis=axis)


# ----- interpolate --------------------------------------------------------------------------
def _nearest_taps(n_in, n_out, scale, exact, dtype):
    """PyTorch's nearest source index: floor(o * s) (legacy) or floor((o + 0.5) * s) (exact),
    s = 1/scale_factor when given, else in/out, computed in float32 as its kernel does."""
    o = np.arange(n_out)
    if not exact and n_out == n_in:
        return o
    if not exact and n_out == 2 * n_in:
        return o >> 1
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    pos = (o.astype(np.float32) + np.float32(0.5 if exact else 0.0)) * s
    return np.minimum(np.floor(pos).astype(np.int64), n_in - 1)


def _linear_taps(n_in, n_out, scale, align_corners, dtype):
    """Two source indices and weights per output position along one axis (PyTorch's rule).

    align_corners=True maps the corner pixel centres onto each other: src = o * (in-1)/(out-1).
    align_corners=False maps pixel areas: src = (o + 0.5) * s - 0.5 with s = 1/scale_factor or
    in/out, clamped at 0 (the first half pixel reads the edge only).
    """
    o = np.arange(n_out)
    if n_out == n_in:  # PyTorch copies when the size is unchanged, whatever scale_factor says
        return o, o, np.ones(n_out, dtype), np.zeros(n_out, dtype)
    if align_corners:
        ratio = dtype(n_in - 1) / dtype(n_out - 1) if n_out > 1 else dtype(0)
        src = ratio * o.astype(dtype)
    else:
        ratio = dtype(1.0 / scale) if scale else dtype(n_in) / dtype(n_out)
        src = np.maximum(ratio * (o.astype(dtype) + dtype(0.5)) - dtype(0.5), dtype(0))
    i0 = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, (dtype(1) - w1).astype(dtype), w1


class Interpolate(Function):
    def forward(self, x, size, scales, mode, align_corners):
        xp = get_array_module(x)
        self.shape, self.mode = x.shape, mode
        dtype = x.dtype.type
        self.taps = []
        for ax, n_out, s in zip((2, 3), size, scales):
            if mode == "bilinear":
                i0, i1, w0, w1 = _linear_taps(x.shape[ax], n_out, s, align_corners, dtype)
                self.taps.append((ax, ((i0, w0), (i1, w1))))
            else:
                idx = _nearest_taps(x.shape[ax], n_out, s, mode == "nearest-exact", dtype)
                self.taps.append((ax, ((idx, None),)))
        out = x
        for ax, taps in self.taps:  # separable: along H, then along W
            shape = [1] * x.ndim
            shape[ax] = -1
            parts = [
                xp.take(out, xp.asarray(i), axis=ax) * (1 if w is None else xp.asarray(w).reshape(shape))
                for i, w in taps
            ]
            out = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return out.astype(x.dtype, copy=False)

    def backward(self, g):
        for ax, taps in reversed(self.taps):
            n = self.shape[ax]
            parts = [_scatter_axis(g, i, n, ax, w) for i, w in taps]
            g = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return (g,)


def _spatial(op, name, value, kind):
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{op}: {name} must be one {kind} or one per spatial dim (2 for 4-D input), got {value!r}")
    ok = (lambda v: isinstance(v, numbers.Integral)) if kind == "int" else (lambda v: isinstance(v, numbers.Real))
    if not all(ok(v) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{op}: {name} must be an {kind} or a pair of {kind}s, got {value!r}")
    return items


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize the spatial dims of an NCHW batch, as ``F.interpolate`` (modes 'nearest',
    'nearest-exact', 'bilinear').

    Give exactly one of ``size`` (int or (H_out, W_out)) and ``scale_factor`` (float or pair;
    H_out = floor(H * scale)). With ``scale_factor`` the source coordinates use 1/scale_factor,
    as PyTorch, unless ``recompute_scale_factor=True`` (then they use H/H_out).
    'nearest' is PyTorch's legacy rule src = floor(dst * H/H_out); 'bilinear' follows
    ``align_corners`` (default False) exactly as PyTorch, which ``align_corners`` may only be
    set for.

    Shape: (N, C, H, W) -> (N, C, H_out, W_out).

    >>> interpolate(np.zeros((1, 3, 4, 4), np.float32), scale_factor=2, mode="bilinear").shape
    (1, 3, 8, 8)
    """
    x = as_tensor(input)
    if mode not in ("nearest", "nearest-exact", "bilinear"):
        raise ValueError(f"interpolate: mode must be 'nearest', 'nearest-exact' or 'bilinear', got {mode!r}")
    if x.ndim != 4:
        raise ValueError(
            f"interpolate: expected a 4-D (N, C, H, W) input for mode {mode!r}, got {x.ndim}-D with shape {x.shape}"
        )
    if align_corners is not None and mode != "bilinear":
        raise ValueError(f"interpolate: align_corners can only be set with mode 'bilinear', got mode {mode!r}")
    if (size is None) == (scale_factor is None):
        which = "both were" if size is not None else "neither was"
        raise ValueError(f"interpolate: exactly one of size or scale_factor must be given, {which}")
    H, W = x.shape[2:]
    if size is not None:
        out = tuple(int(v) for v in _spatial("interpolate", "size", size, "int"))
        scales = (None, None)
    else:
        scales = tuple(float(v) for v in _spatial("interpolate", "scale_factor", scale_factor, "float"))
        out = (math.floor(H * scales[0]), math.floor(W * scales[1]))
        if recompute_scale_factor:
            scales = (None, None)
    if min(out) <= 0 or min(H, W) <= 0:
        raise ValueError(
            f"interpolate: input and output sizes must be greater than 0, got input (H={H}, W={W}) "
            f"and output (H={out[0]}, W={out[1]})"
        )
    scales = tuple(s if s is not None and s > 0 else None for s in scales)
    return Interpolate.apply(x, size=out, scales=scales, mode=mode, align_corners=bool(align_corners))
