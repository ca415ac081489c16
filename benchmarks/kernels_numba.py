"""The compiled (numba) kernels against their NumPy paths and PyTorch, and numba's compile cost.

Cases, float32, 2 threads on every side (BLAS, numba and torch), medians (and minima) of
interleaved rounds -- every variant of a case is timed once per round, round-robin, so all see
the same background load:

* depthwise conv, the layer set's (8, 128, 56, 56) 3x3 stride 1 padding 1, groups=128:
  forward, and forward + backward (input and weight gradients) -- atrous's kernels
  (``depthwise_forward`` + the fused ``depthwise_backward``) and ``F.conv2d`` end to end;
* max_pool2d 3x3 stride 2 padding 1 on (8, 64, 112, 112): forward (with the argmax a
  training step needs) and forward + backward;
* col2im of a 3x3 stride-2 padding-1 convolution over (8, 64, 56, 56) (its input gradient's
  scatter), against ``torch.nn.functional.fold``.

PyTorch is the better of its contiguous and channels_last layouts. Then, in fresh processes
with an empty numba cache: the first call's compile time, and the same calls again when the
cache is warm (loading the machine code from disk).

Run from the repository root::

    .venv/bin/python benchmarks/kernels_numba.py [--rounds 15] [--no-compile]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import THREADS, header  # noqa: E402

import numpy as np  # noqa: E402

COMPILE_SCRIPT = r"""
import time, sys
t0 = time.perf_counter()
import numpy as np
from atrous.kernels import depthwise as D, pooling as K, im2col as I, _numba
assert _numba.enabled(), "numba is not installed"
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 4, 9, 9), dtype=np.float32)
w = rng.standard_normal((4, 1, 3, 3), dtype=np.float32)
P = ((1, 1), (1, 1))
times = {}
def timed(name, fn):
    t = time.perf_counter(); fn(); times[name] = time.perf_counter() - t
timed("depthwise forward", lambda: D.depthwise_forward(x, w, (1, 1), P))
y = D.depthwise_forward(x, w, (1, 1), P)
timed("depthwise backward", lambda: D.depthwise_backward(x, y, w, (1, 1), P))
timed("max_pool2d forward", lambda: K.max_pool2d_forward(x, (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)))
o, a = K.max_pool2d_forward(x, (5, 5), (3, 3), (2, 2), (1, 1), (1, 1))
timed("max_pool2d backward", lambda: K.max_pool2d_backward(o, a, x.shape, (3, 3), (2, 2), (1, 1), (1, 1)))
cols = I.im2col(x, (3, 3), (2, 2), P)
timed("col2im", lambda: I.col2im(cols, x.shape, (3, 3), (2, 2), P))
print(" ".join(f"{k}={v:.3f}" for k, v in times.items()))
"""


def interleaved(fns, rounds, warmup=2):
    """{name: (median ms, min ms)} with every function timed once per round, round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def numpy_path(fn):
    from atrous.kernels._numba import use_numba_disabled

    def run():
        with use_numba_disabled():
            fn()

    return run


def torch_layouts(torch, arrays):
    """{'nchw': tensors, 'cl': tensors} (4-D tensors channels_last in the second)."""
    out = {}
    for tag, fmt in (("nchw", torch.contiguous_format), ("cl", torch.channels_last)):
        out[tag] = [torch.from_numpy(a).contiguous(memory_format=fmt) if a.ndim == 4 else torch.from_numpy(a) for a in arrays]
    return out


def depthwise_case(torch, rounds):
    import atrous
    import atrous.functional as F
    from atrous.kernels import depthwise as D

    N, C, H, K = 8, 128, 56, 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((C, 1, K, K), dtype=np.float32) * 0.3).astype(np.float32)
    gy = rng.standard_normal((N, C, H, H), dtype=np.float32)
    P, s = ((1, 1), (1, 1)), (1, 1)

    def fwd():
        D.depthwise_forward(x, w, s, P)

    def fwd_bwd():
        D.depthwise_forward(x, w, s, P)
        D.depthwise_backward(x, gy, w, s, P)

    X, W = atrous.Tensor(x, requires_grad=True), atrous.Tensor(w, requires_grad=True)

    def conv2d_fwd_bwd():
        X.grad = W.grad = None
        F.conv2d(X, W, padding=1, groups=C).backward(gy)

    fns = {"numba f": fwd, "numpy f": numpy_path(fwd), "numba f+b": fwd_bwd, "numpy f+b": numpy_path(fwd_bwd),
           "F.conv2d f+b": conv2d_fwd_bwd}
    if torch is not None:
        for tag, (tx, tw, tg) in torch_layouts(torch, [x, w, gy]).items():
            tx.requires_grad_(), tw.requires_grad_()

            def th_f(tx=tx, tw=tw):
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, padding=1, groups=C)

            def th_fb(tx=tx, tw=tw, tg=tg):
                tx.grad = tw.grad = None
                torch.nn.functional.conv2d(tx, tw, padding=1, groups=C).backward(tg)

            fns[f"torch {tag} f"], fns[f"torch {tag} f+b"] = th_f, th_fb
    return "depthwise conv (8,128,56,56) 3x3 s1 p1 g128", interleaved(fns, rounds)


def max_pool_case(torch, rounds):
    from atrous.kernels import pooling as K

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 112, 112), dtype=np.float32)
    g = rng.standard_normal((8, 64, 56, 56), dtype=np.float32)
    geom = ((3, 3), (2, 2), (1, 1), (1, 1))

    def fwd():
        K.max_pool2d_forward(x, (56, 56), *geom)

    def fwd_bwd():
        _, arg = K.max_pool2d_forward(x, (56, 56), *geom)
        K.max_pool2d_backward(g, arg, x.shape, *geom)

    fns = {"numba f": fwd, "numpy f": numpy_path(fwd), "numba f+b": fwd_bwd, "numpy f+b": numpy_path(fwd_bwd)}
    if torch is not None:
        for tag, (tx, tg) in torch_layouts(torch, [x, g]).items():
            tx.requires_grad_()

            def th_f(tx=tx):  # with indices, as in training
                with torch.no_grad():
                    torch.nn.functional.max_pool2d(tx, 3, 2, 1, return_indices=True)

            def th_fb(tx=tx, tg=tg):
                tx.grad = None
                torch.nn.functional.max_pool2d(tx, 3, 2, 1).backward(tg)

            fns[f"torch {tag} f"], fns[f"torch {tag} f+b"] = th_f, th_fb
    return "max_pool2d 3x3 s2 p1 on (8,64,112,112)", interleaved(fns, rounds)


def col2im_case(torch, rounds):
    from atrous.kernels import im2col as I

    N, C, H = 8, 64, 56
    geom = ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1))
    OH = (H + 2 - 3) // 2 + 1
    cols = np.random.default_rng(0).standard_normal((N, C * 9, OH * OH), dtype=np.float32)

    def c2i():
        I.col2im(cols, (N, C, H, H), *geom)

    fns = {"numba": c2i, "numpy": numpy_path(c2i)}
    if torch is not None:
        tc = torch.from_numpy(cols)
        fns["torch fold"] = lambda: torch.nn.functional.fold(tc, (H, H), 3, padding=1, stride=2)
    return f"col2im 3x3 s2 p1, (8,{C * 9},{OH * OH}) -> (8,64,56,56)", interleaved(fns, rounds)


def report(title, ms):
    print(f"\n{title}")
    ref = {k: v for k, v in ms.items() if k.startswith("torch")}
    for suffix in ("f", "f+b", ""):
        names = [k for k in ms if (k.split()[-1] == suffix if suffix else len(k.split()) == 1 or k == "torch fold")]
        if not names:
            continue
        th = [ms[k][0] for k in names if k in ref]
        best = min(th) if th else None
        for k in names:
            med, low = ms[k]
            ratio = f"  x{med / best:5.2f} vs torch best" if best and k not in ref else ""
            print(f"  {k:16s} median {med:8.2f} ms   min {low:8.2f} ms{ratio}")


def compile_times():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "src"))
    print("\nnumba compile time (fresh processes, float32 kernels; s):")
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        for label in ("first call, empty cache", "cached, next process"):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=env, cwd=root)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(f"  {label}: failed: {r.stderr.strip().splitlines()[-1:]}")
                return
            print(f"  {label:24s} process {wall:6.2f}  | {r.stdout.strip()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time runs")
    parser.add_argument("--cases", default="depthwise,max_pool,col2im")
    opts = parser.parse_args()
    header("compiled kernels (numba) vs NumPy vs PyTorch, float32")
    import atrous.threads
    from atrous.kernels import _numba

    atrous.threads.set_num_threads(THREADS)
    if not _numba.enabled():
        print("numba is not installed or disabled: only the NumPy paths would run; pip install 'atrous[fast]'")
        return
    try:
        import torch
    except ImportError:
        torch = None
    cases = {"depthwise": depthwise_case, "max_pool": max_pool_case, "col2im": col2im_case}
    for name in opts.cases.split(","):
        title, ms = cases[name](torch, opts.rounds)
        if name == "depthwise":
            print(f"threads: {atrous.threads.thread_info()}")
        report(title, ms)
    print("\n(medians of interleaved rounds; on a shared machine the minima are the better estimate of each)")
    if not opts.no_compile:
        compile_times()


if __name__ == "__main__":
    main()
