"""Pictures of convolution: im2col, filters, feature maps, receptive fields.

Each function draws one figure with matplotlib (imported only when drawing, configured by
``atrous.viz.training.pyplot``), writes it atomically as a PNG and returns the path.

    plot_im2col(x, path, kernel_size=3)            windows of a (C, H, W) input become columns
    plot_filters(weight_or_model, path)            first-layer filters as an image grid
    plot_feature_maps(model_or_maps, input, path)  the maps a layer computes for an input
    plot_receptive_field(image, rf, path, position=(i, j))   what one output unit sees
"""
from __future__ import annotations

import math

import numpy as np

from ..shape import conv_output_size, effective_kernel, pair
from .training import pyplot, save_figure

__all__ = ["plot_im2col", "plot_filters", "plot_feature_maps", "plot_receptive_field"]

# Distinct colours for windows/columns (matplotlib's tab10 without grey).
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22"]


def _numpy(a):
    """The NumPy array behind a Tensor, Parameter or array-like."""
    a = getattr(a, "data", a) if not isinstance(a, np.ndarray) else a
    return np.asarray(a)


# ----- im2col ------------------------------------------------------------------------------
def plot_im2col(x, path, kernel_size=3, stride=1, padding=0, dilation=1, max_rows=80, max_columns=16):
    """Draw im2col: each window of a small (C, H, W) input becomes one column of the matrix.

    Left, the input's channels (zero padding shaded) with every window outlined in its own
    colour; right, the (C*KH*KW, OH*OW) column matrix with rows labelled ``c0.k(0,0)`` ... in
    Caffe's order and each column tinted in the colour of its window. Integer inputs print as
    integers. Returns ``path``.

    >>> plot_im2col(np.arange(48).reshape(3, 4, 4) % 5, "im2col.png", kernel_size=3)  # doctest: +SKIP
    """
    from ..explain import row_labels

    x = _numpy(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"plot_im2col: x must be (C, H, W) or (H, W), got shape {x.shape}")
    C, H, W = x.shape
    KH, KW = pair(kernel_size, "kernel_size", "plot_im2col")
    SH, SW = pair(stride, "stride", "plot_im2col")
    PH, PW = pair(padding, "padding", "plot_im2col")
    DH, DW = pair(dilation, "dilation", "plot_im2col")
    OH, OW = conv_output_size(H, KH, SH, PH, DH), conv_output_size(W, KW, SW, PW, DW)
    if OH < 1 or OW < 1:
        raise ValueError(f"plot_im2col: a {KH}x{KW} kernel (dilation {(DH, DW)}) does not fit the "
                         f"{H}x{W} input padded by {(PH, PW)}")
    K, L = C * KH * KW, OH * OW
    if K > max_rows or L > max_columns:
        raise ValueError(f"plot_im2col: a {K} x {L} column matrix is too large to draw readably "
                         f"(at most {max_rows} rows and {max_columns} columns); use a smaller input")
    xp = np.pad(x, ((0, 0), (PH, PH), (PW, PW)))
    Hp, Wp = xp.shape[1:]
    cols = np.empty((K, L), dtype=xp.dtype)
    for kh in range(KH):
        for kw in range(KW):
            tap = xp[:, kh * DH : kh * DH + SH * (OH - 1) + 1 : SH, kw * DW : kw * DW + SW * (OW - 1) + 1 : SW]
            cols[kh * KW + kw :: KH * KW] = tap.reshape(C, L)
    integer = np.issubdtype(xp.dtype, np.integer) or bool(np.all(xp == np.round(xp)))
    fmt = (lambda v: f"{int(v)}") if integer else (lambda v: f"{v:.2g}".replace("0.", "."))

    plt = pyplot()
    from matplotlib.patches import Rectangle

    # Layout in cell units (y grows downwards): the input channels on the left, the column
    # matrix on the right after a gutter for its row labels. When a channel's grid is shorter
    # than its block of KH*KW rows, it sits level with that block.
    top = 2.2  # room for column headers and titles
    block = KH * KW
    if Hp + 1.6 <= block:
        y_ch = [top + c * block + (block - Hp) / 2 for c in range(C)]
    else:
        y_ch = [top + c * (Hp + 1.6) for c in range(C)]
    label_room = 3.0
    mx = Wp + 1.5 + label_room  # matrix left edge
    total_w = mx + L + 0.5
    total_h = top + max(y_ch[-1] - top + Hp, K) + 1.8
    unit = 0.3  # inches per cell
    width = max(total_w, 22.0)  # wide enough for the caption
    fig = plt.figure(figsize=(width * unit, total_h * unit))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.8, width - 0.8)
    ax.set_ylim(total_h, -0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    fs = 8
    vfs = fs if integer else fs - 1.5  # value font: decimals need the room

    colour = [_COLOURS[p % len(_COLOURS)] for p in range(L)]
    # Insets stay near the cell borders, so outlines run between the printed values.
    insets = np.linspace(0.04, 0.04 + 0.03 * min(L - 1, 5), L)
    spanh, spanw = effective_kernel(KH, DH), effective_kernel(KW, DW)
    for c in range(C):
        y0 = y_ch[c]
        ax.text(0, y0 - 0.25, f"input channel c{c}", fontsize=fs + 1, va="bottom", ha="left")
        for i in range(Hp):
            for j in range(Wp):
                pad_cell = not (PH <= i < PH + H and PW <= j < PW + W)
                ax.add_patch(Rectangle((j, y0 + i), 1, 1, facecolor="#e8e8e8" if pad_cell else "white",
                                       edgecolor="#999999", lw=0.6))
                ax.text(j + 0.5, y0 + i + 0.5, fmt(xp[c, i, j]), ha="center", va="center",
                        fontsize=vfs, color="#888888" if pad_cell else "black")
        # Each window outlined, inset by its own amount so overlapping windows stay visible.
        for p in range(L):
            oh, ow = divmod(p, OW)
            d = insets[p]
            ax.add_patch(Rectangle((ow * SW + d, y0 + oh * SH + d), spanw - 2 * d, spanh - 2 * d,
                                   fill=False, edgecolor=colour[p], lw=1.8))

    # The column matrix.
    ax.text(mx + L / 2, top - 1.25, f"im2col matrix ({K} x {L})", ha="center", va="bottom", fontsize=fs + 1)
    for p in range(L):
        ax.text(mx + p + 0.5, top - 0.2, f"({p // OW},{p % OW})", ha="center", va="bottom",
                fontsize=fs - 1, color=colour[p], fontweight="bold", rotation=90 if L > 6 else 0)
    labels = row_labels(C, (KH, KW))
    for r in range(K):
        y = top + r
        ax.text(mx - 0.2, y + 0.5, labels[r], ha="right", va="center", fontsize=fs - 1, family="monospace")
        for p in range(L):
            ax.add_patch(Rectangle((mx + p, y), 1, 1, facecolor=colour[p], alpha=0.18, lw=0))
            ax.add_patch(Rectangle((mx + p, y), 1, 1, fill=False, edgecolor="#999999", lw=0.5))
            ax.text(mx + p + 0.5, y + 0.5, fmt(cols[r, p]), ha="center", va="center", fontsize=vfs)
    for c in range(1, C):  # heavier rules between channels' blocks of rows
        ax.plot([mx - label_room + 0.2, mx + L], [top + c * KH * KW] * 2, color="black", lw=1.2)
    for p in range(L):
        ax.add_patch(Rectangle((mx + p, top), 1, K, fill=False, edgecolor=colour[p], lw=1.4))

    caption = (f"kernel {KH}x{KW}, stride {SH if SH == SW else (SH, SW)}, padding "
               f"{PH if PH == PW else (PH, PW)}" + (f", dilation {(DH, DW)}" if (DH, DW) != (1, 1) else "")
               + f": each coloured window becomes the column of the same colour;\n"
               f"conv = W_row ({'O'} x {K}) @ X_col ({K} x {L}), reshaped to O x {OH} x {OW}")
    ax.text(-0.5, total_h - 1.4, caption, ha="left", va="top", fontsize=fs)
    return save_figure(fig, path)


# ----- filters -----------------------------------------------------------------------------
def _first_conv_weight(source):
    from ..nn import Conv2d, Module

    if isinstance(source, Conv2d):
        return _numpy(source.weight)
    if isinstance(source, Module):
        for m in source.modules():
            if isinstance(m, Conv2d):
                return _numpy(m.weight)
        raise ValueError(f"plot_filters: {type(source).__name__} has no Conv2d layer")
    return _numpy(source)


def plot_filters(weight, path, ncols=None, max_filters=64, title=None):
    """First-layer filters as an image grid: RGB tiles for 3 input channels, grey otherwise.

    ``weight``: an (O, C, KH, KW) array or Tensor, a ``Conv2d``, or a model (its first Conv2d).
    Each tile is scaled to its own min..max (what matters is the pattern, not the scale). With
    C not 1 or 3, each filter shows its first channels as a row of grey tiles. Returns ``path``.
    """
    w = _first_conv_weight(weight).astype(np.float64)
    if w.ndim != 4:
        raise ValueError(f"plot_filters: weight must be (O, C, KH, KW), got shape {w.shape}")
    O, C, KH, KW = w.shape
    n = min(O, max_filters)
    plt = pyplot()
    if C in (1, 3):
        ncols = ncols or min(n, 8)
        nrows = math.ceil(n / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.15 * ncols, 1.2 * nrows + 0.5), squeeze=False,
                                 layout="constrained")
        for k, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if k >= n:
                continue
            f = w[k]
            f = (f - f.min()) / (np.ptp(f) or 1.0)
            img = f.transpose(1, 2, 0) if C == 3 else f[0]
            ax.imshow(img, cmap=None if C == 3 else "gray", interpolation="nearest", vmin=0, vmax=1)
            ax.set_title(f"{k}", fontsize=8, pad=2)
    else:
        shown = min(C, 8)
        fig, axes = plt.subplots(n, shown, figsize=(1.0 * shown + 0.6, 1.0 * n + 0.5), squeeze=False,
                                 layout="constrained")
        for k in range(n):
            f = w[k, :shown]
            f = (f - f.min()) / (np.ptp(f) or 1.0)
            for c in range(shown):
                ax = axes[k, c]
                ax.imshow(f[c], cmap="gray", interpolation="nearest", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0:
                    ax.set_title(f"c{c}", fontsize=8, pad=2)
                if c == 0:
                    ax.set_ylabel(f"{k}", fontsize=8, rotation=0, labelpad=10, va="center")
    more = f" (first {n} of {O})" if n < O else ""
    if C not in (1, 3) and shown < C:
        more += f", channels 0-{shown - 1} of {C}"
    fig.suptitle(title or f"{O} filters of {KH}x{KW}x{C}{more}", fontsize=10)
    return save_figure(fig, path)


# ----- feature maps ------------------------------------------------------------------------
class _Captured(Exception):
    """Raised by the forward hook to stop the forward pass once the layer has run."""


def _resolve_layer(model, layer):
    from ..nn import Conv2d

    if layer is None:
        for name, m in model.named_modules():
            if isinstance(m, Conv2d):
                return name, m
        raise ValueError(f"plot_feature_maps: {type(model).__name__} has no Conv2d layer; pass layer=")
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except AttributeError as e:
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(f"plot_feature_maps: no layer {layer!r} in {type(model).__name__}; "
                             f"layers: {', '.join(names[:30])}{' ...' if len(names) > 30 else ''}") from e
    for name, m in model.named_modules():
        if m is layer:
            return name, m
    raise ValueError("plot_feature_maps: layer is not a submodule of the model")


def layer_output(model, input, layer=None):
    """Run ``model`` in eval mode on ``input`` up to ``layer`` (dotted name, module, or the first
    Conv2d) and return ``(name, output array)``; the rest of the forward pass is skipped."""
    from .. import no_grad

    name, module = _resolve_layer(model, layer)
    x = _numpy(input)
    x = x[None] if x.ndim == 3 else x
    captured = {}

    def hook(mod, args, out):
        captured["out"] = _numpy(out)
        raise _Captured

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            # The model's own dtype (a picture may come as float64 or integers).
            dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
            model(x.astype(dtype, copy=False))
    except _Captured:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    if "out" not in captured:
        raise ValueError(f"plot_feature_maps: layer {name!r} did not run in the forward pass")
    return name, captured["out"]


def plot_feature_maps(source, input, path, layer=None, max_maps=32, ncols=8, cmap="viridis"):
    """The feature maps a layer computes for one input, each tile scaled to its own range.

    ``source``: a model (the maps of ``layer``, a dotted name such as ``"features.3"``, default
    the first Conv2d) or the maps themselves, an (N, C, H, W) or (C, H, W) array/Tensor (then
    ``input`` is only drawn, and may be None). The input image comes first when given.
    Returns ``path``.
    """
    from ..nn import Module

    if isinstance(source, Module):
        if input is None:
            raise ValueError("plot_feature_maps: an input is needed to compute a model's feature maps")
        name, maps = layer_output(source, input, layer)
        what = f"layer {name} ({type(source.get_submodule(name)).__name__})"
    else:
        maps, what = _numpy(source), "feature maps"
    maps = maps[0] if maps.ndim == 4 else maps
    if maps.ndim != 3:
        raise ValueError(f"plot_feature_maps: feature maps must be (N, C, H, W) or (C, H, W), got {maps.shape}")
    C, H, W = maps.shape
    n = min(C, max_maps)
    img = None
    if input is not None:
        img = _numpy(input)
        img = img[0] if img.ndim == 4 else img
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    plt = pyplot()
    # The input (if any) in its own panel on the left, the maps in a grid on the right.
    left = 2.0 if img is not None else 0.0
    fig = plt.figure(figsize=(left + 1.3 * ncols + 0.2, 1.4 * nrows + 0.6), layout="constrained")
    if img is not None:
        fig_in, fig_maps = fig.subfigures(1, 2, width_ratios=[left, 1.3 * ncols + 0.2])
        ax = fig_in.subplots()
        _show_image(ax, img)
        ax.set_title("input", fontsize=9)
        ax.axis("off")
    else:
        fig_maps = fig
    axes = fig_maps.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for k in range(n):
        axes[k].imshow(maps[k].astype(np.float64), cmap=cmap, interpolation="nearest")
        axes[k].set_title(f"ch {k}", fontsize=8, pad=2)
    more = f", first {n} of {C}" if n < C else ""
    fig.suptitle(f"{what}: {C} map{'s' if C > 1 else ''} of {H}x{W}{more}", fontsize=10)
    return save_figure(fig, path)


def _show_image(ax, img, **kwargs):
    """Show a (C, H, W) or (H, W) image: RGB for 3 channels, grey otherwise (channel 0)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] == 3:
        lo, hi = img.min(), img.max()
        ax.imshow(((img - lo) / ((hi - lo) or 1.0)).transpose(1, 2, 0), interpolation="nearest", **kwargs)
    else:
        ax.imshow(img[0] if img.ndim == 3 else img, cmap="gray", interpolation="nearest", **kwargs)


# ----- receptive field ---------------------------------------------------------------------
def _rf_triplet(rf):
    """(size, jump, start) per axis from a tuple, a dict, an object with those attributes
    (``atrous.analysis.receptive_field``'s result) or a summary row (``rf_size`` ...).

    ``start`` is the input coordinate (pixel index, may be negative or fractional) of the
    centre of output unit (0, 0); unit (i, j) is centred at start + i*jump.
    """
    if isinstance(rf, dict):
        vals = [rf[k] for k in ("size", "jump", "start")]
    elif all(hasattr(rf, k) for k in ("rf_size", "rf_jump", "rf_start")):  # a summary row
        vals = [rf.rf_size, rf.rf_jump, rf.rf_start]
    elif all(hasattr(rf, k) for k in ("size", "jump", "start")):
        vals = [rf.size, rf.jump, rf.start]
    else:
        try:
            vals = list(rf)
        except TypeError:
            vals = []
        if len(vals) != 3:
            raise TypeError("plot_receptive_field: rf must be (size, jump, start), a dict with those keys, "
                            f"or an object with those attributes; got {rf!r}")

    def two(v):
        return (v, v) if np.isscalar(v) else tuple(v)

    (sh, sw), (jh, jw), (oh, ow) = (two(v) for v in vals)
    return (sh, jh, oh), (sw, jw, ow)


def input_gradient_map(model, image, layer, position):
    """|d unit / d input| summed over channels, for unit ``position`` (i, j) of ``layer``'s
    output, summed over that layer's channels: which input pixels the unit actually depends
    on (its *effective* receptive field). Runs the model in eval mode in float64."""
    import copy

    from .. import Tensor

    model = copy.deepcopy(model)  # float64 and hooks on a copy; the caller's model is untouched
    name, module = _resolve_layer(model, layer)
    x = _numpy(image).astype(np.float64)
    x = x[None] if x.ndim == 3 else x
    captured = {}

    def hook(mod, args, out):
        captured["out"] = out
        raise _Captured

    module.register_forward_hook(hook)
    model.eval().double()
    xt = Tensor(x, requires_grad=True)
    try:
        model(xt)
    except _Captured:
        pass
    out = captured["out"]
    i, j = position
    if out.ndim != 4 or not (0 <= i < out.shape[2] and 0 <= j < out.shape[3]):
        raise ValueError(f"plot_receptive_field: position {position} is outside layer {name!r}'s "
                         f"output of shape {tuple(out.shape)}")
    out[0, :, i, j].sum().backward()
    return np.abs(xt.grad[0]).sum(axis=0)


def _dim_outside(ax, inside):
    """Darken the pixels outside the boolean mask ``inside`` so the field stands out."""
    shade = np.zeros(inside.shape + (4,))
    shade[..., 3] = np.where(inside, 0.0, 0.6)
    ax.imshow(shade, interpolation="nearest")


def plot_receptive_field(image, rf, path, position=(0, 0), layer=None, title=None):
    """Overlay on ``image`` the receptive field of output unit ``position`` = (i, j).

    ``rf`` is either the receptive-field arithmetic of a layer -- ``(size, jump, start)``
    (scalars or per-axis pairs), a dict with those keys, an object with those attributes such
    as ``atrous.analysis.receptive_field(model, shape)``, or a row of ``atrous.analysis.summary`` --
    drawn as the box of ``size`` pixels centred at ``start + i*jump``; or a model, with
    ``layer`` naming the layer, drawn as the input pixels the unit depends on (gradient
    magnitude, computed in float64 on an eval-mode copy of the model).
    ``image``: (C, H, W), (H, W) or (1, C, H, W). Returns ``path``.
    """
    from ..nn import Module

    img = _numpy(image)
    img = img[0] if img.ndim == 4 else img
    H, W = img.shape[-2:]
    i, j = position
    plt = pyplot()
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(5.2, 5.2 * H / W + 0.5))
    ax.set_facecolor("#d9d9d9")  # grey beyond the image: the zero padding a box may reach into
    _show_image(ax, img)
    if isinstance(rf, Module):
        grad = input_gradient_map(rf, img, layer, position)
        inside = grad > grad.max() * 1e-12
        _dim_outside(ax, inside)
        # Inside, brighter red where the unit's output depends more strongly on the pixel.
        strength = np.ma.masked_where(~inside, grad / (grad.max() or 1.0))
        ax.imshow(strength, cmap="Reds", alpha=0.45, vmin=0, vmax=1, interpolation="nearest")
        rows, cols = np.nonzero(inside)
        if rows.size:
            ax.add_patch(Rectangle((cols.min() - 0.5, rows.min() - 0.5), cols.max() - cols.min() + 1,
                                   rows.max() - rows.min() + 1, fill=False, edgecolor="yellow", lw=2))
            extent = f"{rows.max() - rows.min() + 1}x{cols.max() - cols.min() + 1}"
        else:
            extent = "empty"
        desc = (f"unit {tuple(position)} of layer {layer!r}: " if layer is not None
                else f"unit {tuple(position)} of the first conv: ") + f"input pixels it depends on ({extent})"
        box = (0, 0, H, W)
    else:
        (sh, jh, oh), (sw, jw, ow) = _rf_triplet(rf)
        ch, cw = oh + i * jh, ow + j * jw
        top, left = ch - (sh - 1) / 2, cw - (sw - 1) / 2
        rr, cc = np.mgrid[0:H, 0:W]
        _dim_outside(ax, (rr >= top) & (rr <= top + sh - 1) & (cc >= left) & (cc <= left + sw - 1))
        # Yellow over black, visible on light and dark images alike.
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), sw, sh, fill=False, edgecolor="black", lw=3.5))
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), sw, sh, fill=False, edgecolor="yellow", lw=2))
        ax.plot([cw], [ch], "+", color="red", ms=12, mew=2)
        clipped = top < 0 or left < 0 or top + sh > H or left + sw > W
        box = (top, left, top + sh, left + sw)
        desc = (f"unit {tuple(position)}: {sh}x{sw} receptive field centred at ({ch:g}, {cw:g})"
                + ("\n(part of it lies in the padding)" if clipped else ""))
    # Show the whole box even where it reaches into the padding around the image.
    t, lft, b, r = min(box[0], 0), min(box[1], 0), max(box[2], H), max(box[3], W)
    ax.set_xlim(lft - 0.5 - 0.02 * (r - lft), r - 0.5 + 0.02 * (r - lft))
    ax.set_ylim(b - 0.5 + 0.02 * (b - t), t - 0.5 - 0.02 * (b - t))
    ax.set_title(title or desc, fontsize=9)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    fig.tight_layout()
    return save_figure(fig, path)
