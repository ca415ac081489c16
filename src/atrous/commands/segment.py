"""``atrous segment``: label every pixel of an image with a trained segmentation run.

    atrous segment --checkpoint runs/seg --scene --seed 3
    atrous segment --checkpoint runs/seg --image page.png --digit-height 40

The run folder (config.json + checkpoint.npz, from ``atrous train --task segment``) gives the
model. ``--scene`` composes a scene of held-out test-split digits (``digit_scenes('test')``,
the run's canvas size) and compares the prediction with its true mask; ``--image`` segments
a picture. A PNG shows the image, the predicted classes over it and, for a scene, the truth,
with a legend of the class colours (background uncoloured).

What ``--image`` expects: digits in the style of scikit-learn's digits, bright on dark or dark
on light (light backgrounds are inverted); ``--digit-height`` (their height in pixels) makes
the picture resized so they become about as tall as the training digits.
"""
from __future__ import annotations

import argparse
import os

TRAINED_HEIGHT = 16  # middle of digit_scenes' default digit sizes (12-20 px)


def register(subparsers):
    p = subparsers.add_parser(
        "segment", help="label every pixel of an image with a trained segmentation run (PNG overlay)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (config.json + checkpoint.npz) or checkpoint file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="picture to segment (PNG; see the module docs)")
    src.add_argument("--scene", action="store_true", help="compose a scene of held-out test digits and segment it")
    p.add_argument("--seed", type=int, default=0, help="scene seed (the same seed, the same scene)")
    p.add_argument("--digit-height", type=float, default=None,
                   help=f"height of the digits in --image, in pixels (resized to ~{TRAINED_HEIGHT}); default: keep the size")
    p.add_argument("--out", default=None, help="overlay PNG (default: segment.png in the run folder)")
    p.set_defaults(func=cmd_segment)


def _load_run(spec):
    from ..cli import build_model, load_run, task_of

    def build(cfg):
        if task_of(cfg) != "segment":
            raise SystemExit(f"atrous segment: {spec} is a '{task_of(cfg)}' run; train one with --task segment")
        return build_model(cfg)

    model, cfg, run_dir = load_run(spec, build)
    return model.eval(), cfg, run_dir


def predict(model, image):
    """Class index per pixel: (H, W) image in [0, 1] -> (H, W) int64 (argmax of 'out')."""
    import numpy as np

    from ..autograd import no_grad
    from ..tensor import Tensor

    with no_grad():
        out = model(Tensor(np.asarray(image, np.float32)[None, None]))
    logits = out["out"] if isinstance(out, dict) else out
    return np.asarray(logits.data)[0].argmax(axis=0)


def cmd_segment(args):
    import numpy as np

    from ..data.digit_scenes import BACKGROUND, CLASSES, digit_scenes
    from ..metrics import confusion_matrix, iou_per_class, pixel_accuracy

    model, cfg, run_dir = _load_run(args.checkpoint)
    opts = cfg.get("dataset_kwargs") or {}
    target = None
    if args.scene:
        size = int(opts.get("size", 64))
        scene = digit_scenes("test", size=size, n_scenes=1, seed=args.seed)
        image, target, boxes = scene.images[0, 0], scene.masks[0], scene.boxes[0]
        what = f"a {size}x{size} scene (seed {args.seed}) of {len(boxes)} held-out test digits"
    else:
        from ..detection import prepare_image
        from .scan import read_picture

        # prepare_image scales digits of height h to 8 px; ask for TRAINED_HEIGHT instead.
        height = None if args.digit_height is None else args.digit_height * 8 / TRAINED_HEIGHT
        image = prepare_image(read_picture(args.image), digit_height=height)
        what = f"{args.image} ({image.shape[0]}x{image.shape[1]} after preparation)"
    pred = predict(model, image)
    print(f"{cfg['model']} from {args.checkpoint}: segmenting {what}")
    counts = np.bincount(pred.ravel(), minlength=len(CLASSES))
    found = [f"{CLASSES[k]}: {counts[k]} px" for k in range(len(CLASSES)) if k != BACKGROUND and counts[k]]
    print("predicted digit pixels: " + (", ".join(found) if found else "none"))
    scores = None
    if target is not None:
        print("planted: " + ", ".join(f"{c} at ({t}, {l}) {s}px" for c, t, l, s, _ in boxes))
        cm = confusion_matrix(pred, target, len(CLASSES))
        iou = iou_per_class(cm)
        scores = (f"this scene: mIoU {np.nanmean(iou):.3f} over the {np.isfinite(iou).sum()} classes present, "
                  f"pixel accuracy {100 * pixel_accuracy(cm):.1f}%")
        print(scores)
    out = args.out or os.path.join(run_dir, "segment.png")
    try:
        from ..viz.segmentation import plot_segmentation
    except ImportError:
        print("overlay not written: matplotlib is not installed (pip install matplotlib)")
        return 0
    try:
        plot_segmentation(image, pred, out, target=target, classes=CLASSES, background=BACKGROUND,
                          title=f"{cfg['model']} on {os.path.basename(args.image) if args.image else 'a held-out scene'}",
                          scores=scores)
    except ImportError:
        print("overlay not written: matplotlib is not installed (pip install matplotlib)")
        return 0
    print(f"overlay: {out}")
    return 0
