"""Shared timing for the benchmarks: 2 threads on both sides, medians, the BLAS in use.

Run a benchmark as a script from the repository root, e.g.
``python benchmarks/conv_layers.py``. For fair numbers on machines whose environment sets
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, unset both for that command alone:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_layers.py``.
"""
from __future__ import annotations

import math
import os
import statistics
import time

THREADS = 2
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))


def limit_threads():
    """Pin NumPy's BLAS and PyTorch to THREADS threads; returns a description of the BLAS."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(THREADS)
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass
    blas = [
        f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "; ".join(blas) or "unknown BLAS"


def median_ms(fn, repeat=7, warmup=2, min_time=0.0):
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start) < min_time:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def header(title):
    import numpy as np

    blas = limit_threads()
    lines = [title, f"numpy {np.__version__}; BLAS: {blas}"]
    try:
        import torch

        lines.append(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    except ImportError:
        lines.append("torch not installed: atrous timings only")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    lines.append(f"env: {env}")
    print("\n".join(lines))
