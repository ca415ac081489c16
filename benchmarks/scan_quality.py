"""Dense scan detection quality: precision and recall on random canvases of held-out digits.

Trains ``digits_scanner`` (train split only; see ``atrous.detection``) or loads a run folder,
then scans 20 random 64x64 canvases, each with 4-6 test-split digits at random
non-overlapping places, and counts a detection right when its class is the planted digit's
and its window corner is within 2 px (per axis) of the planted one. Also reports the same
detections without the 3x3 smoothing of the peaks (ablation), the scan's time per canvas,
and the same scores computed window by window (one forward pass per 8x8 crop) for
comparison.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/scan_quality.py
    .venv/bin/python benchmarks/scan_quality.py --checkpoint runs/demo/scanner
    .venv/bin/python benchmarks/scan_quality.py --train-seeds 0 1 2     # spread over trainings
"""
from __future__ import annotations

import argparse
import os
import sys
import time


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from common import header, median_ms  # noqa: E402


def evaluate(model, canvases, **kwargs):
    from atrous import detection as D

    tp = fp = wrong = planted = 0
    per_canvas = []
    for c in canvases:
        m = D.match_detections(D.find_detections(D.scan(model, c.image), **kwargs), c)
        tp, fp, wrong, planted = tp + m.true_positives, fp + m.false_positives, wrong + m.wrong_class, planted + len(c)
        per_canvas.append((len(c), m.true_positives, m.false_positives))
    return tp, fp, wrong, planted, per_canvas


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="scanner run folder (default: train one)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0], help="train one scanner per seed")
    p.add_argument("--canvases", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="first canvas seed")
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args(argv)

    header("Dense scan: precision / recall of digits_scanner on canvases of held-out digits")
    from atrous import detection as D
    from atrous.surgery import crop_scores, fully_convolutional

    canvases = D.test_canvases(args.canvases, seed=args.seed, size=args.size)
    digits = sum(len(c) for c in canvases)
    print(f"{len(canvases)} canvases {args.size}x{args.size} (seeds {args.seed}..{args.seed + len(canvases) - 1}), "
          f"{digits} planted test-split digits; right = same class, corner within 2 px\n")
    runs = []
    if args.checkpoint:
        model, _ = D.load_scanner(args.checkpoint)
        runs.append((f"run {args.checkpoint}", model, None))
    else:
        for seed in args.train_seeds:
            t0 = time.perf_counter()
            model, trainer = D.train_scanner(seed=seed)
            secs = time.perf_counter() - t0
            h = trainer.history[-1]
            print(f"trained scanner seed {seed}: {len(trainer.history)} epochs, "
                  f"{len(trainer.train_loader.dataset)} windows, {secs:.1f} s "
                  f"({h.images_per_s:.0f} img/s last epoch); held-out digit accuracy {100 * h.val_acc:.2f}%")
            runs.append((f"seed {seed}", model, secs))

    print(f"\n{'scanner':<16}{'smoothing':>10}{'precision':>11}{'recall':>8}{'found':>8}{'false +':>9}{'wrong cls':>11}")
    for name, model, _ in runs:
        for smooth in (1, 0):
            tp, fp, wrong, planted, per_canvas = evaluate(model, canvases, smooth=smooth)
            print(f"{name:<16}{'3x3' if smooth else 'none':>10}{tp / max(tp + fp, 1):>11.3f}{tp / planted:>8.3f}"
                  f"{f'{tp}/{planted}':>8}{fp:>9}{wrong:>11}")
            if smooth and name == runs[0][0]:
                first = per_canvas
    print("\nper canvas (first scanner, 3x3 smoothing): planted/found/false+  "
          + "  ".join(f"{n}/{t}/{f}" for n, t, f in first))

    model = runs[0][1]
    fc = fully_convolutional(model, (1, D.WINDOW, D.WINDOW))
    image = canvases[0].image
    dense_ms = median_ms(lambda: D.scan(fc, image), repeat=7)
    x = image[None, None]
    one_by_one_ms = median_ms(lambda: crop_scores(model, x, D.WINDOW, 1), repeat=1, warmup=0)
    n_windows = (image.shape[0] - D.WINDOW + 1) * (image.shape[1] - D.WINDOW + 1)
    print(f"\nscoring all {n_windows:,} windows of a {image.shape[0]}x{image.shape[1]} canvas: dense scan "
          f"({fc.stride[0]}x{fc.stride[1]} shifted passes) {dense_ms:.1f} ms, window by window "
          f"{one_by_one_ms:.0f} ms ({one_by_one_ms / dense_ms:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
