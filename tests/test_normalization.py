"""batch_norm and local_response_norm: loop references, PyTorch, a composed twin, finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients

# ----- plain references ------------------------------------------------------------------------


def loop_batch_norm(x, rm, rv, w, b, training, momentum, eps):
    """Per-channel loops over every value; returns (y, new running mean, new running var)."""
    C = x.shape[1]
    y = np.empty_like(x, dtype=np.float64)
    new_rm, new_rv = rm.astype(np.float64).copy(), rv.astype(np.float64).copy()
    for c in range(C):
        vals = [float(v) for v in x[:, c].reshape(-1)]
        n = len(vals)
        if training:
            mean = sum(vals) / n
            var = sum((v - mean) ** 2 for v in vals) / n
            new_rm[c] = (1 - momentum) * rm[c] + momentum * mean
            new_rv[c] = (1 - momentum) * rv[c] + momentum * var * n / (n - 1)
        else:
            mean, var = float(rm[c]), float(rv[c])
        for idx in np.ndindex(x[:, c].shape):
            full = (idx[0], c) + idx[1:]
            y[full] = (x[full] - mean) / np.sqrt(var + eps) * (w[c] if w is not None else 1.0) + (
                b[c] if b is not None else 0.0
            )
    return y, new_rm, new_rv


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_loop_reference(rng, shape, training):
    x = rng.standard_normal(shape) * 3 + 1
    C = shape[1]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    y_ref, rm_ref, rv_ref = loop_batch_norm(x, rm, rv, w, b, training, 0.3, 1e-3)
    rm_a, rv_a = rm.copy(), rv.copy()
    y = F.batch_norm(x, rm_a, rv_a, w, b, training=training, momentum=0.3, eps=1e-3)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm_a, rm_ref, rtol=1e-12)
    np.testing.assert_allclose(rv_a, rv_ref, rtol=1e-12)


def test_batch_norm_updates_tensor_running_stats_in_place(rng):
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    rm, rv = Tensor(np.zeros(2, np.float32)), Tensor(np.ones(2, np.float32))
    rm_data, rv_data = rm.data, rv.data
    F.batch_norm(x, rm, rv, training=True, momentum=0.5)
    assert rm.data is rm_data and rv.data is rv_data
    assert rm.dtype == np.float32 and rv.dtype == np.float32
    np.testing.assert_allclose(rm.data, 0.5 * x.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(rv.data, 0.5 + 0.5 * x.var(axis=(0, 2), ddof=1), rtol=1e-5)
    y = F.batch_norm(x, rm, rv, training=False)  # eval leaves them alone
    assert y.dtype == np.float32
    np.testing.assert_allclose(rm.data, 0.5 * x.mean(axis=(0, 2)), rtol=1e-5)


def test_batch_norm_without_running_stats_in_training(rng):
    x = rng.standard_normal((4, 3, 2))
    y = F.batch_norm(x, None, None, training=True).numpy()
    ref = (x - x.mean(axis=(0, 2), keepdims=True)) / np.sqrt(x.var(axis=(0, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-10)


def composed_batch_norm(x, w, b, eps):
    """Training batch norm from Tensor ops: a second oracle for the fused closed-form backward."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xc = x - x.mean(axis=axes, keepdims=True)
    var = (xc * xc).mean(axis=axes, keepdims=True)
    return xc / (var + eps) ** 0.5 * w.reshape(shape) + b.reshape(shape)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 3, 4)])
def test_batch_norm_backward_matches_composed_twin(rng, shape):
    C = shape[1]
    arrays = [rng.standard_normal(shape) * 2 + 0.5, rng.standard_normal(C), rng.standard_normal(C)]
    g = rng.standard_normal(shape)
    grads = []
    for fn in (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, eps=1e-4),
               lambda x, w, b: composed_batch_norm(x, w, b, 1e-4)):
        ts = [Tensor(a, requires_grad=True) for a in arrays]
        out = fn(*ts)
        out.backward(g)
        grads.append([out.numpy()] + [t.grad for t in ts])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def loop_lrn(x, size, alpha, beta, k):
    y = np.empty_like(x, dtype=np.float64)
    C = x.shape[1]
    for idx in np.ndindex(x.shape):
        n, c, rest = idx[0], idx[1], idx[2:]
        s = 0.0
        for j in range(c - size // 2, c + (size - 1) // 2 + 1):
            if 0 <= j < C:
                s += float(x[(n, j) + rest]) ** 2
        y[idx] = x[idx] / (k + alpha / size * s) ** beta
    return y


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_local_response_norm_matches_loop_reference(rng, size):
    x = rng.standard_normal((2, 6, 3, 2)) * 3
    out = F.local_response_norm(x, size, alpha=0.3, beta=0.75, k=2.0).numpy()
    np.testing.assert_allclose(out, loop_lrn(x, size, 0.3, 0.75, 2.0), rtol=1e-12)
    x3 = x[:, :, :, 0]
    np.testing.assert_allclose(
        F.local_response_norm(x3, size).numpy(), loop_lrn(x3, size, 1e-4, 0.75, 1.0), rtol=1e-12
    )


# ----- differential tests against PyTorch -------------------------------------------------------


@st.composite
def bn_cases(draw):
    ndim = draw(st.sampled_from([2, 3, 4]))
    N = draw(st.integers(2, 4))
    C = draw(st.integers(1, 5))
    spatial = [draw(st.integers(1, 5)) for _ in range(ndim - 2)]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    affine = draw(st.sampled_from(["none", "weight", "both"]))
    return dict(
        shape=(N, C, *spatial),
        dtype=dtype,
        affine=affine,
        training=draw(st.booleans()),
        momentum=draw(st.sampled_from([0.1, 0.5, 1.0, 0.0, 0.01])),
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
        strided=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31)),
    )


def _tol(dtype):
    return dict(rtol=1e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


@settings(max_examples=120)
@given(bn_cases())
def test_batch_norm_matches_torch_over_several_steps(torch, case):
    rng = np.random.default_rng(case["seed"])
    shape, dt, C = case["shape"], case["dtype"], case["shape"][1]
    tF = torch.nn.functional
    rm = rng.standard_normal(C).astype(dt)
    rv = rng.uniform(0.5, 2.0, C).astype(dt)
    rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    params = {}
    if case["affine"] in ("weight", "both"):
        params["weight"] = rng.standard_normal(C).astype(dt)
    if case["affine"] == "both":
        params["bias"] = rng.standard_normal(C).astype(dt)
    for step in range(3):
        big = (rng.standard_normal([2 * n for n in shape]) * 2 + step).astype(dt)
        x = big[tuple(slice(0, 2 * n, 2) for n in shape)] if case["strided"] else np.ascontiguousarray(
            big[tuple(slice(0, n) for n in shape)]
        )
        g = rng.standard_normal(shape).astype(dt)
        ours = {k: Tensor(v.copy(), requires_grad=True) for k, v in params.items()}
        theirs = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
        xa, xt = Tensor(x, requires_grad=True), torch.from_numpy(x.copy()).requires_grad_()
        kw = dict(training=case["training"], momentum=case["momentum"], eps=case["eps"])
        y = F.batch_norm(xa, rm, rv, **ours, **kw)
        y_t = tF.batch_norm(xt, rm_t, rv_t, **theirs, **kw)
        y.backward(g)
        y_t.backward(torch.from_numpy(g))
        assert y.dtype == dt
        np.testing.assert_allclose(y.numpy(), y_t.detach().numpy(), **_tol(dt))
        np.testing.assert_allclose(xa.grad, xt.grad.numpy(), **_tol(dt))
        for k in params:
            np.testing.assert_allclose(ours[k].grad, theirs[k].grad.numpy(), **_tol(dt))
        np.testing.assert_allclose(rm, rm_t.numpy(), **_tol(dt))
        np.testing.assert_allclose(rv, rv_t.numpy(), **_tol(dt))


@settings(max_examples=100)
@given(
    st.sampled_from([3, 4, 5]),
    st.integers(1, 7),
    st.integers(1, 9),
    st.sampled_from([1e-4, 0.1, 1.0]),
    st.sampled_from([0.75, 0.5, 1.3]),
    st.sampled_from([1.0, 2.0, 0.5]),
    st.sampled_from([np.float32, np.float64]),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_local_response_norm_matches_torch(torch, ndim, C, size, alpha, beta, k, dt, strided, seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 4)), C) + tuple(int(v) for v in rng.integers(1, 4, ndim - 2))
    big = (rng.standard_normal([2 * n for n in shape]) * 2).astype(dt)
    x = big[tuple(slice(0, 2 * n, 2) for n in shape)] if strided else np.ascontiguousarray(
        big[tuple(slice(0, n) for n in shape)]
    )
    g = rng.standard_normal(shape).astype(dt)
    xa, xt = Tensor(x, requires_grad=True), torch.from_numpy(x.copy()).requires_grad_()
    y = F.local_response_norm(xa, size, alpha, beta, k)
    y_t = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    y.backward(g)
    y_t.backward(torch.from_numpy(g))
    assert y.dtype == dt
    np.testing.assert_allclose(y.numpy(), y_t.detach().numpy(), **_tol(dt))
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), **_tol(dt))


# ----- finite differences (float64) ------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_batch_norm(rng, shape, training, affine):
    C = shape[1]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)

    def fn(x, *wb):
        # Fresh copies: training updates the running stats in place on every evaluation.
        return F.batch_norm(x, rm.copy(), rv.copy(), *wb, training=training, eps=1e-3)

    extra = (rng.standard_normal(C), rng.standard_normal(C)) if affine else ()
    check_gradients(fn, rng.standard_normal(shape), *extra)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_gradcheck_local_response_norm(rng, size):
    check_gradients(
        lambda x: F.local_response_norm(x, size, alpha=0.5, beta=0.75, k=1.5),
        rng.standard_normal((2, 5, 2, 2)),
    )


# ----- errors ----------------------------------------------------------------------------------------


def test_batch_norm_errors_name_the_op_and_shapes():
    x = np.ones((4, 3, 2, 2), np.float32)
    z3, o3 = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm: input has C=3 channels \(input shape \(4, 3, 2, 2\)\) but running_mean has shape \(4,\)"):
        F.batch_norm(x, np.zeros(4, np.float32), o3)
    with pytest.raises(ValueError, match=r"batch_norm: .* weight has shape \(2,\)"):
        F.batch_norm(x, z3, o3, weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"batch_norm: .* bias has shape \(3, 1\)"):
        F.batch_norm(x, z3, o3, bias=np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match=r"batch_norm: expected input .* got 1-D"):
        F.batch_norm(np.ones(3, np.float32), z3, o3)
    with pytest.raises(ValueError, match=r"more than 1 value per channel when training, got input shape \(1, 3\)"):
        F.batch_norm(np.ones((1, 3), np.float32), z3, o3, training=True)
    with pytest.raises(ValueError, match="both be None or neither"):
        F.batch_norm(x, z3, None, training=True)
    with pytest.raises(ValueError, match="evaluation mode"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match="momentum must be a float"):
        F.batch_norm(x, z3, o3, training=True, momentum=None)
    with pytest.raises(ValueError, match="eps must be positive"):
        F.batch_norm(x, z3, o3, training=True, eps=0.0)
    with pytest.raises(TypeError, match="batch_norm: input has dtype float32 but weight has dtype float64"):
        F.batch_norm(x, z3, o3, weight=np.ones(3))
    with pytest.raises(TypeError, match="batch_norm: input must be a floating-point"):
        F.batch_norm(np.ones((2, 3), np.int64), z3, o3)


def test_local_response_norm_errors():
    with pytest.raises(ValueError, match=r"local_response_norm: expected 3D or higher .* got 2-D with shape \(2, 3\)"):
        F.local_response_norm(np.ones((2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="local_response_norm: size must be a positive int"):
        F.local_response_norm(np.ones((2, 3, 4), np.float32), 0)
