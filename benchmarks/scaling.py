"""How convolution cost grows: one 3x3 layer, 64 -> 64 channels, padding 1, float32, forward.

Two sweeps, atrous vs PyTorch (the better of its contiguous and channels_last layouts):
time vs batch size (1, 8, 32, 128) at 56x56, and time vs image size (32 to 512) at batch 8.
atrous runs twice: with the default workspace limit and with a small one (``--small-workspace``
MiB, default 1), which makes every chunk a single block of images. The engine also caps a chunk
at a cache-sized working set, so the default run already chunks the batch from about 40x40 up.
Equal GFLOP/s along a sweep means linear growth, and the two atrous curves lying together means
no cliff where chunking starts; the "chunk" columns show the images per chunk the engine planned. Medians of
round-robin repeats, 2 threads each. Writes ``docs/images/scaling.png`` (matplotlib).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/scaling.py
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import header  # noqa: E402
from conv_layers import interleaved_medians  # noqa: E402

import numpy as np  # noqa: E402

C = O = 64
BATCHES = (1, 8, 32, 128)
SIZES = (32, 64, 128, 224, 256, 384, 512)


def gflop(N, H, W):
    return 2.0 * N * O * H * W * C * 9 / 1e9


def planned_chunk(N, H, W, workspace):
    """Images per chunk that the engine plans under ``workspace`` bytes ('-' if unknown)."""
    import atrous
    from atrous.kernels import conv_gemm

    plan = getattr(conv_gemm, "_plan", None)
    if plan is None:
        return "-"
    old = atrous.config.workspace_bytes
    atrous.config.workspace_bytes = workspace
    try:
        return str(plan((N, C, H, W), (3, 3), O, (H, W), ((1, 1), (1, 1)), 4)[1])
    except Exception:  # the engine's planner changed shape: the column is informative only
        return "-"
    finally:
        atrous.config.workspace_bytes = old


def time_point(N, H, small_ws, repeat):
    """Median ms of atrous (default and small workspace) and torch (best layout) at one shape."""
    import torch

    import atrous
    import atrous.functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((O, C, 3, 3), dtype=np.float32) * 0.1).astype(np.float32)
    default_ws = atrous.config.workspace_bytes

    def at(ws):
        def run():
            atrous.config.workspace_bytes = ws
            try:
                F.conv2d(x, w, padding=1)
            finally:
                atrous.config.workspace_bytes = default_ws
        return run

    fns = {"atrous": at(default_ws), "atrous_small": at(small_ws)}
    for fmt, tag in ((torch.contiguous_format, "nchw"), (torch.channels_last, "cl")):
        tx = torch.from_numpy(x).contiguous(memory_format=fmt)
        tw = torch.from_numpy(w).contiguous(memory_format=fmt)

        def th(tx=tx, tw=tw):
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, padding=1)

        fns[f"torch_{tag}"] = th
    ms = interleaved_medians(fns, repeat=repeat, warmup=1)
    return ms["atrous"], ms["atrous_small"], min(ms["torch_nchw"], ms["torch_cl"])


def sweep(title, points, small_ws, repeat, default_ws):
    print(f"\n{title}")
    print(f"{'N':>4}{'HxW':>9}{'GFLOP':>8}{'atrous ms':>11}{'GF/s':>6}{'chunk':>6}"
          f"{'small-ws ms':>13}{'GF/s':>6}{'chunk':>6}{'torch ms':>10}{'GF/s':>6}{'ratio':>7}")
    rows = []
    for N, H in points:
        a, s, t = time_point(N, H, small_ws, repeat)
        g = gflop(N, H, H)
        rows.append((N, H, a, s, t))
        print(f"{N:>4}{f'{H}x{H}':>9}{g:>8.2f}{a:>11.1f}{g / a * 1e3:>6.0f}{planned_chunk(N, H, H, default_ws):>6}"
              f"{s:>13.1f}{g / s * 1e3:>6.0f}{planned_chunk(N, H, H, small_ws):>6}{t:>10.1f}{g / t * 1e3:>6.0f}{a / t:>7.2f}")
    return rows


def plot(batch_rows, size_rows, small_mib, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    series = ((2, "atrous", "o-"), (3, f"atrous, {small_mib:g} MiB workspace", "s--"),
              (4, "PyTorch (best layout)", "^-"))
    for j, (rows, xi, xlabel) in enumerate(((batch_rows, 0, "batch size (56x56)"),
                                            (size_rows, 1, "image size H = W (batch 8)"))):
        xs = [r[xi] for r in rows]
        work = [gflop(r[0], r[1], r[1]) for r in rows]
        top, bottom = axes[0][j], axes[1][j]
        for col, label, style in series:
            top.plot(xs, [r[col] for r in rows], style, label=label)
            bottom.plot(xs, [g / r[col] * 1e3 for g, r in zip(work, rows)], style, label=label)
        # time proportional to work through the first atrous point: linear growth lies on it
        top.plot(xs, [rows[0][2] * g / work[0] for g in work], ":", color="grey", label="linear in work")
        top.set_yscale("log")
        top.set_ylabel("forward ms")
        bottom.set_ylabel("GFLOP/s (flat = linear cost)")
        bottom.set_ylim(bottom=0)
        bottom.set_xlabel(xlabel)
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("conv2d 3x3, 64 -> 64 channels, padding 1, float32, 2 threads")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a picture
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-workspace", type=float, default=1.0, help="MiB for the chunked run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer points (up to batch 32 / 256x256)")
    parser.add_argument("--plot", default=os.path.join(HERE, "..", "docs", "images", "scaling.png"))
    args = parser.parse_args()
    header("Scaling of one 3x3 convolution, 64 -> 64 channels, forward")
    import atrous

    small = int(args.small_workspace * 2**20)
    default_ws = atrous.config.workspace_bytes
    print(f"workspace limits: default {default_ws / 2**20:g} MiB, small {args.small_workspace:g} MiB")
    batches = BATCHES[:3] if args.quick else BATCHES
    sizes = tuple(s for s in SIZES if s <= 256) if args.quick else SIZES
    batch_rows = sweep("time vs batch size, 56x56", [(n, 56) for n in batches], small, args.repeat, default_ws)
    size_rows = sweep("time vs image size, batch 8", [(8, h) for h in sizes], small, args.repeat, default_ws)
    for label, rows in (("batch", batch_rows), ("image size", size_rows)):
        spread = []
        for col, who in ((2, "atrous"), (3, "atrous small-ws"), (4, "torch")):
            rates = [gflop(r[0], r[1], r[1]) / r[col] for r in rows]
            spread.append(f"{who} {max(rates) / min(rates):.2f}")
        print(f"GFLOP/s spread (max/min) along the {label} sweep: " + ", ".join(spread))
    if args.plot:
        try:
            plot(batch_rows, size_rows, args.small_workspace, os.path.abspath(args.plot))
            print(f"\nplot written to {os.path.relpath(os.path.abspath(args.plot))}")
        except ImportError:
            print("\nmatplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
