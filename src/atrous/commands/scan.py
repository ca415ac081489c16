"""``atrous scan``: slide a trained digits classifier over a larger image in one pass per shift.

    atrous scan --checkpoint runs/demo/scanner --canvas --seed 3
    atrous scan --checkpoint runs/demo/scanner --image page.png --digit-height 32

The run folder's model (config.json + checkpoint.npz) is made fully convolutional
(``atrous.surgery.fully_convolutional``) and run over the image; detections are printed as
class, window position and probability, and a heatmap PNG is written. Detection needs a
model trained with a background class (``digits_scanner``, as the demo trains); a plain
10-class classifier is scanned too, but it names a digit everywhere, so its "detections"
are only the strongest peaks.

What ``--image`` expects: a PNG (or anything matplotlib reads) of digits written in the
style of scikit-learn's 8x8 digits, bright on dark or dark on light (light backgrounds are
inverted), each digit roughly as wide as it is tall. The picture is made grayscale and
stretched to [0, 1]; ``--digit-height`` tells how tall the digits are in it, in pixels, and
it is resized so they become 8 px tall, the size the classifier was trained at.
"""
from __future__ import annotations

import argparse
import os


def register(subparsers):
    p = subparsers.add_parser(
        "scan", help="detect digits on a larger image with a trained classifier (dense scan)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (config.json + checkpoint.npz) or checkpoint file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="picture to scan (PNG; see 'What --image expects' in the module docs)")
    src.add_argument("--canvas", action="store_true", help="compose a canvas of held-out test digits and scan it")
    p.add_argument("--seed", type=int, default=0, help="canvas seed (the same seed, the same canvas)")
    p.add_argument("--size", type=int, default=64, help="canvas side in pixels")
    p.add_argument("--digit-height", type=float, default=None,
                   help="height of the digits in --image, in pixels (resized to 8); default: already 8")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum P(a digit is there) for a detection")
    p.add_argument("--out", default=None, help="heatmap PNG (default: scan.png in the run folder)")
    p.set_defaults(func=cmd_scan)


def read_picture(path):
    """A picture file as an array, via matplotlib (PNG natively, other formats with Pillow)."""
    try:
        import matplotlib.image as mpimg
    except ImportError:
        raise SystemExit("atrous: reading --image needs matplotlib (pip install matplotlib)") from None
    if not os.path.exists(path):
        raise SystemExit(f"atrous: {path} not found")
    return mpimg.imread(path)


def cmd_scan(args):
    from .. import detection as D
    from ..cli import run_paths
    from ..surgery import fully_convolutional

    if not 0 < args.threshold < 1:
        raise SystemExit(f"atrous scan: --threshold must be in (0, 1), got {args.threshold}")
    model, cfg = D.load_scanner(args.checkpoint)
    window = tuple(cfg.get("window", (1, D.WINDOW, D.WINDOW)))
    fc = fully_convolutional(model, window)
    canvas = None
    if args.canvas:
        canvas = D.test_canvases(1, seed=args.seed, size=args.size)[0]
        image = canvas.image
        what = f"a {args.size}x{args.size} canvas (seed {args.seed}) of {len(canvas)} held-out test digits"
    else:
        image = D.prepare_image(read_picture(args.image), digit_height=args.digit_height)
        what = f"{args.image} ({image.shape[0]}x{image.shape[1]} after preparation)"
    result = D.scan(fc, image)
    detections = D.find_detections(result, threshold=args.threshold)

    print(f"{cfg['model']} from {args.checkpoint}: window {fc.window[0]}x{fc.window[1]}, trunk stride "
          f"{fc.stride[0]}, {result.passes} pass{'es' if result.passes > 1 else ''} for a stride-1 map")
    print(f"scanning {what}")
    if result.background is None:
        print("note: this model has no background class, so every window gets a digit; "
              "train with one (digits_scanner) for real detection")
    print(f"{len(detections)} digit{'s' if len(detections) != 1 else ''} found "
          f"(row, col: top-left corner of the 8x8 window, in pixels):")
    print(f"  {'class':>5}  {'row':>4}  {'col':>4}  {'probability':>11}")
    for d in sorted(detections, key=lambda d: (d.row, d.col)):
        print(f"  {d.label:>5}  {d.row:>4}  {d.col:>4}  {d.score:>11.3f}")
    if canvas is not None:
        m = D.match_detections(detections, canvas)
        print(f"planted: {', '.join(f'{c} at ({t}, {l})' for c, t, l in zip(canvas.labels, canvas.tops, canvas.lefts))}")
        print(f"{m.true_positives} of {len(canvas)} found at the right place (within 2 px) with the right "
              f"class; {m.false_positives} false positive{'s' if m.false_positives != 1 else ''}")
    out = args.out or os.path.join(run_paths(args.checkpoint)[0], "scan.png")
    try:
        from ..viz.scan import plot_scan
    except ImportError:
        print("heatmap not written: matplotlib is not installed (pip install matplotlib)")
        return 0
    plot_scan(image, result, detections, out, planted=canvas)
    print(f"heatmap: {out}")
    return 0
