"""The dense scan as a picture: detections, the winning digit per window, per-class score maps."""
from __future__ import annotations


import numpy as np

from .training import pyplot, save_figure

BACKGROUND_COLOUR = "#9e9e9e"


def _class_colours(n=10):
    """One distinct colour per digit class (matplotlib's tab10)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return [cmap(k % 10) for k in range(n)]


def _map_extent(result, shape):
    """imshow extent putting map entry (i, j) on the centre of its window in image pixels.

    Entry (i, j) is the window with top-left corner (i*s, j*s), whose centre is at
    (i*s + (h-1)/2, j*s + (w-1)/2); each entry is drawn as an s x s cell around it.
    """
    s = result.stride
    h, w = result.window
    rows, cols = shape
    top, left = (h - 1) / 2 - s / 2, (w - 1) / 2 - s / 2
    return (left, left + cols * s, top + rows * s, top)


def plot_scan(image, result, detections, path, planted=None, title=None):
    """Write a PNG of a scan: the image with detection boxes, the most probable digit of
    every window, and one probability map per digit class, each overlaid on the image.

    image: (H, W) in [0, 1] (bright digits on black, as scanned). result: the
    ``atrous.detection.ScanResult``; detections: its ``find_detections`` list. planted: the
    ``Canvas`` when the truth is known (drawn as dashed white boxes). Returns ``path``.
    """
    from matplotlib.gridspec import GridSpec
    from matplotlib.patches import Patch, Rectangle

    plt = pyplot()
    image = np.asarray(image, dtype=np.float32)
    H, W = image.shape
    probs = result.probabilities()
    n_digits = probs.shape[0] - (result.background is not None)
    digit_probs = np.delete(probs, result.background, axis=0) if result.background is not None else probs
    colours = _class_colours(n_digits)
    extent = _map_extent(result, probs.shape[1:])
    wh = result.window

    aspect = H / W
    fig = plt.figure(figsize=(12, 5.4 * aspect + 4.6), constrained_layout=True)
    gs = GridSpec(3, 10, figure=fig, height_ratios=[2.3 * aspect, 1, 1])
    ax_det = fig.add_subplot(gs[0, :5])
    ax_cls = fig.add_subplot(gs[0, 5:])

    # 1. The image, what was found (coloured boxes) and, when known, what was planted.
    ax_det.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if planted is not None:
        for t, l in zip(planted.tops, planted.lefts):
            ax_det.add_patch(Rectangle((l - 0.5, t - 0.5), wh[1], wh[0], fill=False, ec="white",
                                       lw=1.2, ls=(0, (2, 2))))
    for d in detections:
        colour = colours[d.label % len(colours)]
        ax_det.add_patch(Rectangle((d.col - 0.5, d.row - 0.5), wh[1], wh[0], fill=False, ec=colour, lw=2.2))
        # Label above the box, or below it when the box touches the top edge.
        above = d.row >= 4
        y = d.row - 1.0 if above else d.row + wh[0]
        ax_det.text(d.col - 0.5, y, f"{d.label} {d.score:.2f}", color="black", fontsize=9,
                    fontweight="bold", va="bottom" if above else "top", ha="left",
                    bbox=dict(boxstyle="square,pad=0.15", fc=colour, ec="none", alpha=0.9), clip_on=True)
    found = f"{len(detections)} detection{'s' if len(detections) != 1 else ''}"
    if planted is not None:
        from ..detection import match_detections

        m = match_detections(detections, planted)
        found = (f"{m.true_positives} of {len(planted)} planted digits (dashed) found, "
                 f"{m.false_positives} false")
    ax_det.set_title(title or f"Dense scan: {found}", fontsize=11)
    ax_det.set_axis_off()

    # 2. Every window coloured by its most probable digit, opacity = P(some digit there).
    # The image dimmed (ink at most 40% grey) so the class colours stand out on it.
    ax_cls.imshow(image, cmap="gray", vmin=0, vmax=2.5, interpolation="nearest")
    winner = digit_probs.argmax(axis=0)
    presence = 1 - probs[result.background] if result.background is not None else digit_probs.max(axis=0)
    rgba = np.array(colours)[winner]
    rgba[..., 3] = 0.85 * np.clip(presence, 0, 1)
    ax_cls.imshow(rgba, extent=extent, interpolation="nearest")
    ax_cls.set_xlim(-0.5, W - 0.5)
    ax_cls.set_ylim(H - 0.5, -0.5)
    ax_cls.set_title("Most probable digit at each window centre\n(opacity: P(a digit is there))", fontsize=11)
    ax_cls.set_axis_off()
    handles = [Patch(color=colours[k], label=str(k)) for k in range(n_digits)]
    if result.background is not None:
        handles.append(Patch(fc="none", ec=BACKGROUND_COLOUR, label="background"))
    ax_cls.legend(handles=handles, title="class", loc="center left", bbox_to_anchor=(1.01, 0.5),
                  fontsize=9, title_fontsize=9, frameon=False)

    # 3. One probability map per digit class.
    axes = [fig.add_subplot(gs[1 + k // 5, 2 * (k % 5):2 * (k % 5) + 2]) for k in range(min(n_digits, 10))]
    for k, ax in enumerate(axes):
        ax.imshow(image, cmap="gray", vmin=0, vmax=2.5, interpolation="nearest")
        heat = np.zeros(digit_probs.shape[1:] + (4,))
        heat[..., :3] = np.array(colours[k])[:3]
        heat[..., 3] = np.clip(digit_probs[k], 0, 1)
        ax.imshow(heat, extent=extent, interpolation="nearest")
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.set_title(f"P(digit {k})  max {digit_probs[k].max():.2f}", fontsize=9)
        ax.set_axis_off()

    return save_figure(fig, path, dpi=100)
