"""FFT convolution vs the GEMM engine vs PyTorch on stride-1 layers with large kernels (and 3x3).

For each layer: conv2d forward alone and forward + backward (input, weight and bias gradients),
float32, 2 threads on every side, median ms over rounds timed round-robin (as
``conv_layers.py``), with atrous forced onto 'fft' and onto 'gemm', and PyTorch the better of
NCHW and channels_last. Ratio columns: fft / gemm and fft / torch (below 1: FFT is faster).
The FFT tile plan of the forward is printed per layer, and the geometric means at the end.

Run from the repository root (unset the OpenBLAS overrides for fair numbers)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/fft_conv.py
    ... fft_conv.py --layers k7_c64_56,k3_c64_56 --repeat 9
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import geomean, header  # noqa: E402
from conv_layers import interleaved_medians, layer_flops, torch_fns  # noqa: E402

import numpy as np  # noqa: E402

# name: (N, C, H=W, O, k), stride 1, padding k // 2 ('same' for odd k), dilation 1, groups 1
LAYERS = {
    "k3_c64_56": (8, 64, 56, 64, 3),
    "k3_c128_28": (8, 128, 28, 128, 3),
    "k5_c64_56": (8, 64, 56, 64, 5),
    "k7_c3_224": (8, 3, 224, 64, 7),  # resnet conv1 at stride 1
    "k7_c3_112": (8, 3, 112, 64, 7),
    "k7_c16_112": (8, 16, 112, 16, 7),
    "k7_c64_56": (8, 64, 56, 64, 7),
    "k11_c16_112": (8, 16, 112, 16, 11),
    "k11_c64_56": (8, 64, 56, 64, 11),
    "k15_c32_112": (4, 32, 112, 32, 15),
    "k15_c64_56": (8, 64, 56, 64, 15),
}




def bench_layer(cfg, atrous, F, torch, repeat):
    from atrous.kernels.algorithms import use_algorithm

    N, C, H, O, k = cfg
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((O, C, k, k), dtype=np.float32) * 0.1).astype(np.float32)
    b = rng.standard_normal(O, dtype=np.float32)
    p = k // 2
    gy = rng.standard_normal(F.conv2d(x, w, b, padding=p).shape, dtype=np.float32)
    X, W, B = (atrous.Tensor(a, requires_grad=True) for a in (x, w, b))
    fns = {}
    for alg in ("fft", "gemm"):
        def fwd(alg=alg):
            with use_algorithm(alg):
                F.conv2d(x, w, b, padding=p)

        def fwd_bwd(alg=alg):
            X.grad = W.grad = B.grad = None
            with use_algorithm(alg):
                F.conv2d(X, W, B, padding=p).backward(gy)

        fns[f"{alg}_f"], fns[f"{alg}_fb"] = fwd, fwd_bwd
    if torch is not None:
        fns.update(torch_fns(torch, x, w, b, gy, dict(padding=p)))
    ms = interleaved_medians(fns, repeat=repeat, warmup=1)
    if torch is not None:
        ms["th_f"] = min(ms["th_f_nchw"], ms["th_f_cl"])
        ms["th_fb"] = min(ms["th_fb_nchw"], ms["th_fb_cl"])
    return ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layer names")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per layer (default 5)")
    opts = parser.parse_args()
    header("FFT convolution vs GEMM vs PyTorch, stride 1, float32")
    import atrous
    import atrous.functional as F
    from atrous.kernels import fft

    try:
        import torch
    except ImportError:
        torch = None
    print(f"{'layer':12s} {'(N, C, H, O, k)':22s} {'plan L, T, tiles, chunk':30s} |"
          f" {'fwd fft':>8s} {'gemm':>7s} {'torch':>7s} {'/gemm':>6s} {'/torch':>6s} |"
          f" {'f+b fft':>8s} {'gemm':>7s} {'torch':>7s} {'/gemm':>6s} {'/torch':>6s}")
    ratios = {"fg": [], "ft": [], "bg": [], "bt": []}
    for name in opts.layers.split(","):
        cfg = LAYERS[name]
        N, C, H, O, k = cfg
        plan = fft.plan((H, H), (k, k), N, C, O, 1, 4)
        ms = bench_layer(cfg, atrous, F, torch, opts.repeat)
        fg, bg = ms["fft_f"] / ms["gemm_f"], ms["fft_fb"] / ms["gemm_fb"]
        ratios["fg"].append(fg)
        ratios["bg"].append(bg)
        th_f = th_fb = float("nan")
        ft = bt = float("nan")
        if torch is not None:
            th_f, th_fb = ms["th_f"], ms["th_fb"]
            ft, bt = ms["fft_f"] / th_f, ms["fft_fb"] / th_fb
            ratios["ft"].append(ft)
            ratios["bt"].append(bt)
        gflop = layer_flops(N, C, H, O, k, 1, k // 2, 1, 1) / 1e9
        print(f"{name:12s} {str(cfg):22s} {str(tuple(plan)):30s} |"
              f" {ms['fft_f']:8.1f} {ms['gemm_f']:7.1f} {th_f:7.1f} {fg:6.2f} {ft:6.2f} |"
              f" {ms['fft_fb']:8.1f} {ms['gemm_fb']:7.1f} {th_fb:7.1f} {bg:6.2f} {bt:6.2f}"
              f"   ({gflop:.1f} GFLOP fwd direct)", flush=True)
    print("geometric means: fft/gemm forward {:.2f}, f+b {:.2f}; fft/torch forward {:.2f}, f+b {:.2f}".format(
        geomean(ratios["fg"]), geomean(ratios["bg"]), geomean(ratios["ft"]), geomean(ratios["bt"])))


if __name__ == "__main__":
    main()
