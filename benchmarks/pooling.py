"""max_pool2d 3x3 stride 2 padding 1 (ResNet's stem pool) on (8, 64, 112, 112), atrous vs PyTorch.

Forward alone and forward + backward, float32, 2 threads each, median ms and the ratio
atrous / torch (lower is better). Run from the repository root::

    .venv/bin/python benchmarks/pooling.py
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import header, median_ms  # noqa: E402

import numpy as np  # noqa: E402

SHAPE = (8, 64, 112, 112)
ARGS = dict(kernel_size=3, stride=2, padding=1)


def main():
    header(f"max_pool2d {ARGS} on {SHAPE} float32")
    import atrous
    import atrous.functional as F

    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    g = np.random.default_rng(1).standard_normal(
        F.max_pool2d(x, **ARGS).shape).astype(np.float32)

    def at_fwd():
        F.max_pool2d(x, **ARGS)

    def at_fwd_bwd():
        t = atrous.Tensor(x, requires_grad=True)
        F.max_pool2d(t, **ARGS).backward(g)

    rows = [("forward", median_ms(at_fwd)), ("forward+backward", median_ms(at_fwd_bwd))]
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        for name, ms in rows:
            print(f"{name:18s} atrous {ms:8.2f} ms")
        return
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)

    def th_fwd():
        with torch.no_grad():
            TF.max_pool2d(tx, **ARGS)

    def th_fwd_bwd():
        t = tx.clone().requires_grad_()
        TF.max_pool2d(t, **ARGS).backward(tg)

    torch_ms = [median_ms(th_fwd), median_ms(th_fwd_bwd)]
    print(f"{'':18s} {'atrous ms':>10s} {'torch ms':>10s} {'ratio':>7s}")
    for (name, ms), tms in zip(rows, torch_ms):
        print(f"{name:18s} {ms:10.2f} {tms:10.2f} {ms / tms:7.2f}")


if __name__ == "__main__":
    main()
