"""conv2d over a set of real layers, atrous vs PyTorch, and peak memory of a large convolution.

For each layer: forward alone and forward + backward (gradients of input, weight and bias),
float32, 2 threads each, median ms over 9 rounds timed round-robin (so both libraries see the
same background load), GFLOP/s (a forward is 2*N*O*OH*OW*C/groups*KH*KW flops,
forward + backward three times that), and the ratio atrous / torch. Each library is timed in
two layouts, with x and gy contiguous (NCHW) and with their memory channels-last (torch's
``channels_last``; for atrous an NCHW-shaped view of NHWC memory, the layout its fast
convolutions return, see ``atrous.layout``), and the better of the two counts; the column
``cl`` marks where atrous's channels-last time was the better. Then the geometric means of the
ratios, and the same with atrous held to NCHW inputs.

Last, in a fresh subprocess each, the peak memory of one (64, 3, 512, 512) x 3x3x64 conv2d
(padding 1) under the default workspace limit, by tracemalloc (NumPy's allocations) and by
ru_maxrss (the whole process).

Run from the repository root (unset the OpenBLAS overrides for fair numbers)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/conv_layers.py
    ... conv_layers.py --layers resnet_56,depthwise --no-memory
    ... conv_layers.py --algorithm winograd      # force one algorithm where it applies
    ... conv_layers.py --autotune                # time the algorithms per layer, keep the fastest
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import geomean, header, median_ms  # noqa: E402

import numpy as np  # noqa: E402

# name: (N, C, H=W, O, k, stride, padding, dilation, groups)
LAYERS = {
    "alexnet_conv1": (8, 3, 227, 96, 11, 4, 0, 1, 1),
    "resnet_56": (8, 64, 56, 64, 3, 1, 1, 1, 1),
    "resnet_28": (8, 128, 28, 128, 3, 1, 1, 1, 1),
    "resnet_14": (8, 256, 14, 256, 3, 1, 1, 1, 1),
    "resnet_7": (8, 512, 7, 512, 3, 1, 1, 1, 1),
    "resnet_down": (8, 64, 56, 128, 3, 2, 1, 1, 1),
    "bottleneck_1x1": (8, 256, 56, 64, 1, 1, 0, 1, 1),
    "dilated_r2": (4, 64, 64, 64, 3, 1, 2, 2, 1),
    "depthwise": (8, 128, 56, 128, 3, 1, 1, 1, 128),
    "cifar_small": (64, 16, 32, 16, 3, 1, 1, 1, 1),
}
# The 3x3 layers of the CIFAR ResNet of train_step.py (batch 32), reported apart from the set
# above (whose geometric mean the performance bar is stated on): --layers cifar_16,cifar_32,cifar_64
EXTRA_LAYERS = {
    "cifar_16": (32, 16, 32, 16, 3, 1, 1, 1, 1),
    "cifar_32": (32, 32, 16, 32, 3, 1, 1, 1, 1),
    "cifar_64": (32, 64, 8, 64, 3, 1, 1, 1, 1),
}

MEMORY_SCRIPT = r"""
import resource, sys, tracemalloc
import numpy as np
sys.path.insert(0, "src")
lib = sys.argv[1]
x = np.random.default_rng(0).standard_normal((64, 3, 512, 512), dtype=np.float32)
w = np.random.default_rng(1).standard_normal((64, 3, 3, 3), dtype=np.float32)
if lib == "atrous":
    import atrous
    import atrous.functional as F
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    y = F.conv2d(x, w, padding=1)
    _, peak = tracemalloc.get_traced_memory()
    extra = atrous.config.workspace_bytes
else:
    import torch
    torch.set_num_threads(2)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
    peak, extra = 0, 0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak, (rss - base) * 1024, extra, y.numel() * 4 if hasattr(y, "numel") else y.data.nbytes)
"""


def layer_flops(N, C, H, O, k, s, p, d, g):
    OH = (H + 2 * p - d * (k - 1) - 1) // s + 1
    return 2.0 * N * O * OH * OH * (C // g) * k * k


def torch_fns(torch, x, w, b, gy, args):
    """PyTorch's conv2d forward and forward+backward in both layouts: {'th_f_nchw', 'th_fb_nchw',
    'th_f_cl', 'th_fb_cl'} -> function."""
    TF, fns = torch.nn.functional, {}
    for fmt, tag in ((torch.contiguous_format, "nchw"), (torch.channels_last, "cl")):
        tx = torch.from_numpy(x).contiguous(memory_format=fmt).requires_grad_()
        tw = torch.from_numpy(w).contiguous(memory_format=fmt).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        tg = torch.from_numpy(gy).contiguous(memory_format=fmt)

        def th_fwd(tx=tx, tw=tw, tb=tb):
            with torch.no_grad():
                TF.conv2d(tx, tw, tb, **args)

        def th_fwd_bwd(tx=tx, tw=tw, tb=tb, tg=tg):
            tx.grad = tw.grad = tb.grad = None
            TF.conv2d(tx, tw, tb, **args).backward(tg)

        fns[f"th_f_{tag}"], fns[f"th_fb_{tag}"] = th_fwd, th_fwd_bwd
    return fns


def bench_layer(cfg, F, atrous, torch):
    N, C, H, O, k, s, p, d, g = cfg
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((O, C // g, k, k), dtype=np.float32) * 0.1).astype(np.float32)
    b = rng.standard_normal(O, dtype=np.float32)
    args = dict(stride=s, padding=p, dilation=d, groups=g)
    gy = rng.standard_normal(F.conv2d(x, w, b, **args).shape, dtype=np.float32)

    fns = {}
    for tag, (xa, ga) in (("nchw", (x, gy)), ("cl", (channels_last(x), channels_last(gy)))):
        X, W, B = (atrous.Tensor(a, requires_grad=True) for a in (xa, w, b))

        def at_fwd(xa=xa):
            F.conv2d(xa, w, b, **args)

        def at_fwd_bwd(X=X, W=W, B=B, ga=ga):
            X.grad = W.grad = B.grad = None
            F.conv2d(X, W, B, **args).backward(ga)

        fns[f"at_f_{tag}"], fns[f"at_fb_{tag}"] = at_fwd, at_fwd_bwd
    if torch is not None:
        fns.update(torch_fns(torch, x, w, b, gy, args))
    ms = interleaved_medians(fns)
    at = {op: (ms[f"at_{op}_nchw"], ms[f"at_{op}_cl"]) for op in ("f", "fb")}
    if torch is None:
        return at, None
    return at, (min(ms["th_f_nchw"], ms["th_f_cl"]), min(ms["th_fb_nchw"], ms["th_fb_cl"]))


def channels_last(a):
    """a's values, NCHW-shaped, with NHWC memory (as torch's channels_last)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


PAUSE_S = 0.03  # idle time before each (untimed, timed) pair of calls


def interleaved_medians(fns, repeat=9, warmup=2):
    """Median ms of each function, timed round-robin so that both libraries see the same
    background load on a shared machine. Before each timed call the machine idles for
    ``PAUSE_S`` and the same function runs once untimed: PyTorch's OpenMP threads and
    OpenBLAS's threads keep spinning for a while after their last op and would otherwise slow
    whichever call comes next (measured: up to 3x on a 2 ms layer)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            time.sleep(PAUSE_S)
            times[k].append(median_ms(fn, repeat=1, warmup=1))
    return {k: statistics.median(v) for k, v in times.items()}


def memory_report():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print("\npeak memory, conv2d of a (64, 3, 512, 512) float32 input, 64 3x3 filters, padding 1:")
    for lib in ("atrous", "torch"):
        r = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, lib], cwd=root, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  {lib}: failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        traced, rss, workspace, out_bytes = (int(v) for v in r.stdout.split())
        mib = 1 / 2**20
        line = f"  {lib:6s} process peak grew {rss * mib:8.0f} MiB (output alone {out_bytes * mib:.0f} MiB)"
        if lib == "atrous":
            cols = 64 * 3 * 9 * 512 * 512 * 4
            line += (
                f"; NumPy peak {traced * mib:.0f} MiB = output + {(traced - out_bytes) * mib:.0f} MiB "
                f"working memory (workspace limit {workspace * mib:.0f} MiB; unchunked columns "
                f"would be {cols * mib:.0f} MiB)"
            )
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layer names")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument(
        "--algorithm", default="auto",
        help="atrous.config.conv_algorithm: auto, gemm, gemm_nhwc, mec, winograd, winograd_f4, direct_depthwise, fft",
    )
    parser.add_argument("--autotune", action="store_true", help="atrous.config.conv_autotune = True")
    opts = parser.parse_args()
    header("conv2d layers, float32")
    import atrous
    import atrous.functional as F
    from atrous.kernels.algorithms import names

    if opts.algorithm not in names():
        parser.error(f"--algorithm must be one of {names()}, got {opts.algorithm!r}")
    atrous.config.conv_algorithm = opts.algorithm
    atrous.config.conv_autotune = opts.autotune
    print(f"atrous algorithm: {opts.algorithm}{', autotuned' if opts.autotune else ''}")

    try:
        import torch
    except ImportError:
        torch = None
    cols = "layer            fwd ms cl  torch  GF/s  ratio | f+b ms cl   torch  GF/s  ratio"
    print(cols)
    ratios = {"f": [], "fb": [], "f_nchw": [], "fb_nchw": []}
    for name in opts.layers.split(","):
        cfg = LAYERS[name] if name in LAYERS else EXTRA_LAYERS[name]
        fl = layer_flops(*cfg) / 1e6  # MFLOP, so MFLOP / ms = GFLOP/s
        at, th = bench_layer(cfg, F, atrous, torch)
        (af, afb), mark = (min(at["f"]), min(at["fb"])), {op: " *" if at[op][1] < at[op][0] else "  " for op in at}
        if th is None:
            print(f"{name:15s} {af:7.2f}{mark['f']}      - {fl / af:5.0f}      - | "
                  f"{afb:7.2f}{mark['fb']}       - {3 * fl / afb:5.0f}")
            continue
        rf, rfb = af / th[0], afb / th[1]
        for key, value in (("f", rf), ("fb", rfb), ("f_nchw", at["f"][0] / th[0]), ("fb_nchw", at["fb"][0] / th[1])):
            ratios[key].append(value)
        print(
            f"{name:15s} {af:7.2f}{mark['f']} {th[0]:6.2f} {fl / af:5.0f} {rf:6.2f} | "
            f"{afb:7.2f}{mark['fb']} {th[1]:7.2f} {3 * fl / afb:5.0f} {rfb:6.2f}"
        )
    if ratios["f"]:
        g = {k: geomean(v) for k, v in ratios.items()}
        print(f"geometric mean ratio: forward {g['f']:.2f}, forward+backward {g['fb']:.2f} "
              f"(atrous on NCHW inputs only: forward {g['f_nchw']:.2f}, forward+backward {g['fb_nchw']:.2f})")
    if not opts.no_memory:
        memory_report()


if __name__ == "__main__":
    main()
