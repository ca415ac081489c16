"""Numerical accuracy of each convolution algorithm against a float64 reference, on the layer set
of ``conv_layers.py``.

For every layer and every algorithm that applies to it (``atrous.kernels.algorithms``), the
float32 forward, input gradient and weight gradient are compared with the float64 GEMM path run
on the same (float32-valued) inputs. The error reported is relative to the output's scale::

    max |result_float32 - reference_float64| / max |reference_float64|

Inputs are standard normal, weights He-scaled (std sqrt(2 / fan_in)), output gradients standard
normal. Winograd F(4x4, 3x3) is offered to the automatic choice only while its error stays
within ``LIMIT`` (1e-4) on every layer. Batch size is reduced (``--batch``, default 2): the
error does not depend on it.

    .venv/bin/python benchmarks/conv_accuracy.py
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from conv_layers import LAYERS  # noqa: E402

LIMIT = 1e-4


def layer_errors(cfg, batch, algorithms):
    N, C, H, O, k, s, p, d, g = cfg
    rng = np.random.default_rng(0)
    x = rng.standard_normal((min(N, batch), C, H, H)).astype(np.float32)
    w = (rng.standard_normal((O, C // g, k, k)) * np.sqrt(2.0 / (C // g * k * k))).astype(np.float32)
    args = ((s, s), ((p, p), (p, p)), (d, d), g)
    ref = algorithms.ALGORITHMS["gemm"]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    y64 = ref.forward(x64, w64, *args)
    gy = rng.standard_normal(y64.shape).astype(np.float32)
    gy64 = gy.astype(np.float64)
    refs = (y64, ref.input_grad(gy64, w64, x.shape[2:], *args), ref.weight_grad(x64, gy64, (k, k), *args))
    out = {}
    for name, alg in algorithms.ALGORITHMS.items():
        if not alg.applies(x.shape, w.shape, *args):
            continue
        got = (alg.forward(x, w, *args), alg.input_grad(gy, w, x.shape[2:], *args), alg.weight_grad(x, gy, (k, k), *args))
        out[name] = [float(np.abs(a - r).max() / np.abs(r).max()) for a, r in zip(got, refs)]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layer names")
    parser.add_argument("--batch", type=int, default=2, help="images per layer (default 2)")
    opts = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
    from atrous.kernels import algorithms

    print("max relative error vs float64 (max |err| / max |ref|), float32 inputs")
    print(f"{'layer':15s} {'algorithm':17s} {'forward':>9s} {'input grad':>10s} {'weight grad':>11s}")
    worst = {}
    for lname in opts.layers.split(","):
        for name, errs in layer_errors(LAYERS[lname], opts.batch, algorithms).items():
            worst[name] = max(worst.get(name, 0.0), *errs)
            print(f"{lname:15s} {name:17s} {errs[0]:9.1e} {errs[1]:10.1e} {errs[2]:11.1e}")
    print("\nworst over the layer set:")
    for name, e in worst.items():
        print(f"  {name:17s} {e:.1e}  {'within' if e <= LIMIT else 'ABOVE'} {LIMIT:g}")


if __name__ == "__main__":
    main()
