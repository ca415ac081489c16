"""Segmentation masks drawn over their image: one colour per class, background transparent.

``overlay`` is plain NumPy (an RGB array, usable anywhere); ``plot_segmentation`` lays out
the image, the predicted mask and, when known, the true mask side by side with a legend of
the class colours and writes a PNG (matplotlib).
"""
from __future__ import annotations


import numpy as np

from .training import pyplot, save_figure

# Ten saturated, mutually distinct colours (none grey: the image under them is grey).
PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231",
           "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#9a6324"]


def class_colours(num_classes):
    """(num_classes, 3) float RGB in [0, 1]: :data:`PALETTE`, then evenly spaced hues beyond ten."""
    rgb = [tuple(int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)) for h in PALETTE]
    if num_classes > len(rgb):
        import colorsys

        extra = num_classes - len(rgb)
        rgb += [colorsys.hsv_to_rgb(k / extra, 0.75, 0.95) for k in range(extra)]
    return np.array(rgb[:num_classes], np.float64)


def overlay(image, mask, colours=None, background=None, alpha=0.65, ignore_index=None):
    """Blend class colours over a grey image; ``background`` (and ``ignore_index``) pixels
    keep the image as it is.

    image: (H, W) in [0, 1]; mask: (H, W) ints in [0, K). colours: (K, 3) RGB in [0, 1]
    (default :func:`class_colours`). Returns (H, W, 3) float64 RGB in [0, 1].

    >>> overlay(np.zeros((1, 2)), np.array([[0, 1]]), background=1, alpha=1.0)[0, :, 0].round(3)
    array([0.902, 0.   ])
    """
    image = np.asarray(image, np.float64)
    mask = np.asarray(mask)
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(f"overlay: image must be (H, W) and mask the same shape, got {image.shape} "
                         f"and {mask.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    labelled = np.ones(mask.shape, bool)
    for skip in (background, ignore_index):
        if skip is not None:
            labelled &= mask != skip
    k = int(mask[labelled].max()) + 1 if labelled.any() else 1
    colours = class_colours(k) if colours is None else np.asarray(colours, np.float64)
    if labelled.any() and (mask[labelled].min() < 0 or mask[labelled].max() >= len(colours)):
        raise ValueError(f"overlay: mask values {int(mask[labelled].min())}..{int(mask[labelled].max())} "
                         f"need {int(mask[labelled].max()) + 1} colours, got {len(colours)}")
    grey = np.repeat(np.clip(image, 0.0, 1.0)[..., None], 3, axis=-1)
    out = grey.copy()
    tint = colours[np.where(labelled, mask, 0)]
    out[labelled] = (1 - alpha) * grey[labelled] + alpha * tint[labelled]
    return out


def plot_segmentation(image, pred, path, target=None, classes=None, background=None,
                      title=None, scores=None, ignore_index=None):
    """Write a PNG: the image, the predicted mask over it and (if given) the true mask over it,
    with a legend of class colours below; returns ``path``.

    image: (H, W) in [0, 1]; pred, target: (H, W) class indices. classes: names (index ->
    name); background: the class left uncoloured (also left out of the legend). scores: a
    short line printed under the titles (e.g. this image's IoU).
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    image, pred = np.asarray(image), np.asarray(pred)
    n = len(classes) if classes is not None else int(max(pred.max(), 0 if target is None else target.max())) + 1
    names = list(classes) if classes is not None else [str(k) for k in range(n)]
    colours = class_colours(n)
    panels = [("image", np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=-1)),
              ("prediction", overlay(image, pred, colours, background))]
    if target is not None:
        panels.append(("ground truth", overlay(image, target, colours, background, ignore_index=ignore_index)))
    H, W = image.shape
    side = 3.4
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), side * H / W + 1.3),
                             constrained_layout=True, squeeze=False)
    for ax, (name, rgb) in zip(axes[0], panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    shown = [k for k in range(n) if k != background]
    handles = [Patch(facecolor=colours[k], edgecolor="none", label=names[k]) for k in shown]
    if background is not None:
        handles.append(Patch(facecolor="black", edgecolor="0.6", label=f"{names[background]} (uncoloured)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6 if n > 8 else len(handles)),
               frameon=False, handlelength=1.2, columnspacing=1.0, fontsize=9)
    heading = title or ""
    if scores:
        heading = f"{heading}\n{scores}" if heading else scores
    if heading:
        fig.suptitle(heading, fontsize=10)
    return save_figure(fig, path)
