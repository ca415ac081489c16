"""batch_norm on (8, 64, 56, 56) float32: training forward+backward (and forward alone, and eval),
atrous vs PyTorch, 2 threads each, median ms and the ratio atrous / torch.

Run from the repository root: ``python benchmarks/batch_norm.py``.
"""
from __future__ import annotations

import common  # noqa: F401  (sets the thread environment before NumPy loads)

import numpy as np

import atrous.functional as F
from atrous import Tensor

SHAPE = (8, 64, 56, 56)


def main():
    common.header(f"batch_norm {SHAPE} float32")
    rng = np.random.default_rng(0)
    C = SHAPE[1]
    x = rng.standard_normal(SHAPE).astype(np.float32)
    g = rng.standard_normal(SHAPE).astype(np.float32)
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)

    xa, wa, ba = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)

    def ours_train():
        xa.grad = wa.grad = ba.grad = None  # as zero_grad(set_to_none=True): no accumulation pass
        F.batch_norm(xa, rm, rv, wa, ba, training=True).backward(g)

    def ours_forward():
        F.batch_norm(x, rm, rv, w, b, training=True)

    def ours_eval():
        F.batch_norm(x, rm, rv, w, b, training=False)

    rows = [("train fwd+bwd", ours_train), ("train fwd (no grad)", ours_forward), ("eval fwd", ours_eval)]
    theirs = {}
    try:
        import torch

        tx = torch.from_numpy(x.copy()).requires_grad_()
        tw, tb = torch.from_numpy(w.copy()).requires_grad_(), torch.from_numpy(b.copy()).requires_grad_()
        trm, trv, tg = torch.zeros(C), torch.ones(C), torch.from_numpy(g)
        tF = torch.nn.functional

        def torch_train():
            tx.grad = tw.grad = tb.grad = None
            tF.batch_norm(tx, trm, trv, tw, tb, training=True).backward(tg)

        def torch_forward():
            with torch.no_grad():
                tF.batch_norm(tx, trm, trv, tw, tb, training=True)

        def torch_eval():
            with torch.no_grad():
                tF.batch_norm(tx, trm, trv, tw, tb, training=False)

        theirs = {"train fwd+bwd": torch_train, "train fwd (no grad)": torch_forward, "eval fwd": torch_eval}
    except ImportError:
        pass

    print(f"{'case':<22}{'atrous ms':>11}{'torch ms':>11}{'ratio':>8}")
    for name, fn in rows:
        ms = common.median_ms(fn, repeat=21, warmup=3)
        if name in theirs:
            tms = common.median_ms(theirs[name], repeat=21, warmup=3)
            print(f"{name:<22}{ms:>11.2f}{tms:>11.2f}{ms / tms:>8.2f}")
        else:
            print(f"{name:<22}{ms:>11.2f}{'-':>11}{'-':>8}")


if __name__ == "__main__":
    main()
