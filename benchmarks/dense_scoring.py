"""Dense scoring: one pass of the fully convolutional network vs 36 separate crops.

The classic numbers: a VGG-style network trained on 224x224 windows, scored on a 384x384
image. Fully convolutional: one pass, a 12x12 trunk map, a 6x6 score map. The slow way:
the original network on each of the 36 windows at stride 32, one pass each (batch 1).
Two networks: the real vgg16 (random weights: only time and shapes matter here) and a
narrow one with vgg16's layout and 1/16 of its widths (there also the 36 crops as one
batch of 36, to separate shared work from per-call overhead). The multiply-adds of each
way (every Conv2d, the converted classifier included) are counted with forward hooks; their
ratio is the speedup to expect if time followed work.
The same runs in PyTorch (the converted weights in torch.nn) give its numbers for scale.

Float32, batch 1, 2 threads each, medians. Run from the repository root::

    .venv/bin/python benchmarks/dense_scoring.py            # both networks (vgg16 ~5 min)
    .venv/bin/python benchmarks/dense_scoring.py --narrow   # the narrow network only
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from common import header, median_ms  # noqa: E402

import numpy as np  # noqa: E402

IMAGE, WINDOW, STRIDE = 384, 224, 32


def narrow_vgg16(divisor=16, hidden=256, classes=1000):
    """vgg16's layout (13 padded 3x3 convs, 5 pools, avgpool 7x7, 3 FC) at 1/divisor width."""
    from atrous import nn
    from atrous.models.vgg import CFG_D, VGG, make_layers

    model = VGG.__new__(VGG)
    nn.Module.__init__(model)
    model.features = make_layers([v if v == "M" else v // divisor for v in CFG_D])
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(
        nn.Linear(512 // divisor * 49, hidden), nn.ReLU(), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, classes))
    return model


def conv_macs(model, x):
    """Multiply-adds of every Conv2d in one forward pass of ``model`` on ``x``."""
    import atrous
    from atrous import nn

    total = [0]

    def hook(m, args, out):
        n, o, oh, ow = out.shape
        kh, kw = m.kernel_size
        total[0] += n * o * oh * ow * (m.in_channels // m.groups) * kh * kw

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in convs]
    with atrous.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def torch_mirror(fc):
    """The converted network as a torch.nn.Sequential with the same weights."""
    import torch
    from atrous import nn

    layers = []
    for m in list(fc.features) + list(fc.classifier):
        if isinstance(m, nn.Conv2d):
            t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(np.asarray(m.weight)))
                t.bias.copy_(torch.from_numpy(np.asarray(m.bias)))
        elif isinstance(m, nn.MaxPool2d):
            t = torch.nn.MaxPool2d(m.kernel_size, m.stride)
        elif isinstance(m, nn.ReLU):
            t = torch.nn.ReLU()
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            continue  # eval mode
        else:
            raise TypeError(f"torch_mirror: {type(m).__name__} not handled")
        layers.append(t)
    return torch.nn.Sequential(*layers).eval()


def bench(name, model, repeat, crop_repeat, batched):
    import atrous
    from atrous import surgery

    model.eval()
    fc = surgery.fully_convolutional(model, (3, WINDOW, WINDOW))
    x = np.random.default_rng(0).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    n = (IMAGE - WINDOW) // STRIDE + 1
    with atrous.no_grad():
        fmap = np.asarray(fc.features(x))
        dense = np.asarray(fc.classifier(fmap))
    crops = np.asarray(surgery.crop_scores(model, x, WINDOW, STRIDE))  # also the crops' warm-up
    rel = float(np.abs(dense - crops).max() / np.abs(crops).max())
    macs_dense = conv_macs(fc, x)
    macs_crops = n * n * conv_macs(fc, x[:, :, :WINDOW, :WINDOW])
    print(f"\n== {name}: {IMAGE}x{IMAGE} image, {WINDOW}x{WINDOW} windows at stride "
          f"{fc.stride[0]}; trunk map {fmap.shape[2]}x{fmap.shape[3]}x{fmap.shape[1]}, "
          f"score map {dense.shape[2]}x{dense.shape[3]}x{dense.shape[1]}")
    print(f"MACs (convolutions, classifier included): dense {macs_dense / 1e9:.2f} G, "
          f"{n * n} crops {macs_crops / 1e9:.2f} G "
          f"(work ratio {macs_crops / macs_dense:.1f}x)")
    print(f"max |dense - crops| / max |crops| = {rel:.3g}  (zero padding: a cut-out window "
          f"sees zeros where the image has neighbours; exact_crops={fc.exact_crops})")

    def dense_pass():
        with atrous.no_grad():
            fc(x)

    def crop_passes():
        surgery.crop_scores(model, x, WINDOW, STRIDE)

    stack = np.concatenate([x[:, :, i * STRIDE:i * STRIDE + WINDOW, j * STRIDE:j * STRIDE + WINDOW]
                            for i in range(n) for j in range(n)])

    def crops_one_batch():
        with atrous.no_grad():
            model(stack)

    rows = [("dense, one pass", median_ms(dense_pass, repeat=repeat, warmup=1)),
            (f"{n * n} crops, one pass each",
             median_ms(crop_passes, repeat=crop_repeat, warmup=0))]
    if batched:
        rows.append((f"{n * n} crops, one batch", median_ms(crops_one_batch, repeat=crop_repeat,
                                                        warmup=1)))
    torch_ms = [None] * len(rows)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        tfc = torch_mirror(fc)
        tx, tstack = torch.from_numpy(x), torch.from_numpy(stack)
        with torch.no_grad():
            got = tfc(tx).numpy()
        assert np.abs(got - dense).max() <= 1e-4 * np.abs(dense).max(), "torch mirror disagrees"

        def t_dense():
            with torch.no_grad():
                tfc(tx)

        def t_crops():
            with torch.no_grad():
                for i in range(n):
                    for j in range(n):
                        y, x0 = i * STRIDE, j * STRIDE
                        tfc(tx[:, :, y:y + WINDOW, x0:x0 + WINDOW])

        def t_batch():
            with torch.no_grad():
                tfc(tstack)

        torch_ms = [median_ms(t_dense, repeat=repeat), median_ms(t_crops, repeat=crop_repeat)]
        if batched:
            torch_ms.append(median_ms(t_batch, repeat=crop_repeat))
    print(f"{'':28s} {'atrous ms':>10s} {'speedup':>8s} {'torch ms':>10s} {'speedup':>8s}")
    for (label, ms), tms in zip(rows, torch_ms):
        su = rows[1][1] / ms
        t = f"{tms:10.1f} {torch_ms[1] / tms:7.2f}x" if tms is not None else ""
        print(f"{label:28s} {ms:10.1f} {su:7.2f}x {t}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--narrow", action="store_true", help="skip the full-width vgg16")
    parser.add_argument("--repeat", type=int, default=5, help="timed dense passes (median)")
    parser.add_argument("--crop-repeat", type=int, default=3,
                        help="timed rounds of 36 crops for vgg16 (median)")
    args = parser.parse_args()
    header("Dense scoring vs separate crops (FC-to-conv surgery), float32, batch 1")
    import atrous
    from atrous import models

    atrous.manual_seed(0)  # the same random weights every run
    bench("narrow VGG-16 (widths / 16)", narrow_vgg16(), args.repeat, args.repeat, True)
    if not args.narrow:
        bench("vgg16", models.vgg16(), args.repeat, args.crop_repeat, False)


if __name__ == "__main__":
    main()
