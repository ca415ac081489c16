"""``atrous explain conv``: the im2col + GEMM arithmetic of a tiny convolution, printed.

    atrous explain conv --input 4x4x3 --kernel 3 --stride 1
    atrous explain conv --input 5x5x2 --kernel 3 --stride 2 --padding 1 --png im2col.png
"""
from __future__ import annotations

import argparse


def register(subparsers):
    p = subparsers.add_parser("explain", help="follow the arithmetic of an operation on a tiny example")
    ops = p.add_subparsers(dest="explain_op", required=True)
    c = ops.add_parser(
        "conv", help="im2col matrix, weight matrix and their product for a small convolution",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    c.add_argument("--input", default="4x4x3", help="input size HxWxC (or HxW for one channel)")
    c.add_argument("--kernel", type=int, default=3, help="kernel size (square)")
    c.add_argument("--stride", type=int, default=1)
    c.add_argument("--padding", type=int, default=0, help="zero padding on every side")
    c.add_argument("--dilation", type=int, default=1, help="spacing between kernel taps")
    c.add_argument("--filters", type=int, default=2, help="number of filters (output channels)")
    c.add_argument("--seed", type=int, default=0, help="seed of the integer input and filters")
    c.add_argument("--png", default=None, metavar="PATH",
                   help="also draw the im2col picture (needs matplotlib)")
    c.set_defaults(func=cmd_explain_conv)


def cmd_explain_conv(args):
    from ..explain import explain_conv, parse_hwc

    try:
        shape = parse_hwc(args.input)
        ex = explain_conv(shape, kernel_size=args.kernel, stride=args.stride, padding=args.padding,
                          dilation=args.dilation, filters=args.filters, seed=args.seed)
    except ValueError as e:
        raise SystemExit(f"atrous: {e}") from None
    print(ex.format())
    if args.png:
        try:
            from ..viz.conv import plot_im2col

            path = plot_im2col(ex.x, args.png, kernel_size=args.kernel, stride=args.stride,
                               padding=args.padding, dilation=args.dilation)
        except ImportError as e:
            raise SystemExit(f"atrous: --png needs matplotlib ({e}); pip install matplotlib") from None
        except ValueError as e:
            raise SystemExit(f"atrous: {e}") from None
        print(f"wrote {path}")
    return 0 if ex.matches_conv2d else 1
