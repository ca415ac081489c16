"""Finite-difference gradient checking in float64, the independent oracle for every backward."""
from __future__ import annotations

import numpy as np

from atrous import Tensor


def numeric_grad(f, arrays, index, eps=1e-6):
    """Central differences of the scalar f(*arrays) with respect to arrays[index]."""
    x = arrays[index]
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(*arrays)
        flat[i] = old - eps
        fm = f(*arrays)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def check_gradients(fn, *arrays, wrt=None, rtol=1e-5, atol=1e-7, seed=0):
    """Assert autograd's gradients of ``fn`` match central differences.

    ``fn`` maps Tensors to a Tensor; the scalar tested is sum(fn(...) * R) with a fixed random
    R, so every output element's gradient path is exercised with a distinct weight.
    ``wrt`` lists the indices of ``arrays`` to check (default: all floating ones).
    """
    arrays = [np.array(a, dtype=np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating)
              else np.asarray(a) for a in arrays]
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if np.issubdtype(a.dtype, np.floating)]
    out0 = np.asarray(fn(*[Tensor(a) for a in arrays]).data)
    R = np.random.default_rng(seed).standard_normal(out0.shape)

    def scalar(*arrs):
        return float((np.asarray(fn(*[Tensor(a) for a in arrs]).data) * R).sum())

    tensors = [Tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays)]
    out = fn(*tensors)
    out.backward(R.astype(out.dtype))
    for i in wrt:
        expected = numeric_grad(scalar, arrays, i)
        got = tensors[i].grad
        assert got is not None, f"no gradient reached input {i}"
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"input {i}")
