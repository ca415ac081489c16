"""Effect of ``model.fuse()`` on resnet18 inference (batch 8, 224x224): atrous unfused vs fused,
next to PyTorch unfused and fused by ``torch.fx.experimental.optimization.fuse``.

Same weights everywhere (``benchmarks/inference.py``'s models: BatchNorm statistics randomised so
folding matters); outputs are checked against PyTorch before timing. 2 threads each, medians of
round-robin repeats (so every variant sees the same background load).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/fusion.py
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import header  # noqa: E402
from conv_layers import interleaved_medians  # noqa: E402
from inference import build_models  # noqa: E402

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    header(f"resnet18 inference with and without fuse(), batch {args.batch}, {args.size}x{args.size}")
    import torch
    from torch.fx.experimental.optimization import fuse as torch_fuse

    import atrous
    from atrous import nn

    model, tmodel = build_models()
    fused = copy.deepcopy(model).fuse()
    tfused = torch_fuse(tmodel)
    kinds = {}
    for m in fused.modules():
        kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
    print(f"after fuse(): {kinds.get('BatchNorm2d', 0)} BatchNorm2d left, "
          f"{sum(type(m) is nn.Conv2d for m in fused.modules())} Conv2d with folded bias, "
          f"{kinds.get('ConvReLU2d', 0)} ConvReLU2d")

    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    xt = torch.from_numpy(x)

    def atrous_fn(m):
        def run():
            with atrous.no_grad():
                return m(atrous.Tensor(x)).data
        return run

    def torch_fn(m):
        def run():
            with torch.inference_mode():
                return m(xt).numpy()
        return run

    fns = {"atrous": atrous_fn(model), "atrous fused": atrous_fn(fused),
           "torch": torch_fn(tmodel), "torch fused": torch_fn(tfused)}
    ref = fns["torch"]()
    scale = float(np.abs(ref).max())
    print("max |diff| / max |logit| vs torch: "
          + ", ".join(f"{k} {np.abs(fn() - ref).max() / scale:.1e}" for k, fn in fns.items() if k != "torch"))
    ms = interleaved_medians(fns, repeat=args.repeat)
    print(f"\n{'variant':<14}{'ms':>9}{'vs unfused':>12}{'vs torch':>10}")
    for k, t in ms.items():
        base = ms["atrous"] if k.startswith("atrous") else ms["torch"]
        print(f"{k:<14}{t:>9.1f}{t / base:>12.2f}{t / ms['torch']:>10.2f}")
    print(f"fuse() speed-up: atrous {ms['atrous'] / ms['atrous fused']:.2f}x, "
          f"torch {ms['torch'] / ms['torch fused']:.2f}x")


if __name__ == "__main__":
    main()
