"""Front-door checks shared by the ops, with messages that name the op, argument and values."""
from __future__ import annotations

import numpy as np


def check_rank(op, name, x, ranks):
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if x.ndim not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{op}: expected {name} to be {want}, got {x.ndim}-D with shape {tuple(x.shape)}")


def check_float(op, name, x):
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{op}: {name} must be a floating-point array (float32 or float64), got dtype {x.dtype}"
        )


def check_same_dtype(op, a_name, a, b_name, b):
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: {a_name} has dtype {a.dtype} but {b_name} has dtype {b.dtype}; cast one of them"
        )


def check_positive(op, name, values, minimum=1):
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum} in every dimension, got {tuple(values)}")
