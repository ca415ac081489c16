"""Direct depthwise convolution: plain loops, PyTorch on random configurations, finite
differences, and the NumPy path against the numba path."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atrous.autograd import Function
from atrous.kernels import depthwise as D
from atrous.kernels._numba import numba_module, use_numba_disabled
from gradcheck import check_gradients

# Both implementations are tested: "numpy" (the reference) and "numba" (skipped without it).
PATHS = [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(numba_module() is None, reason="numba is not installed")),
]


def run(path, fn, *args, **kw):
    with use_numba_disabled(path == "numpy"):
        return fn(*args, **kw)


# ----- plain-loop references ----------------------------------------------------------------
def ref_forward(x, w, stride, padding, dilation):
    """y[n, o, oh, ow] = sum w[o, 0, kh, kw] * x[n, o // M, ih, iw], in-bounds taps only."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    M = O // C
    (SH, SW), ((t, b), (l, r)), (DH, DW) = stride, padding, dilation
    OH = (H + t + b - DH * (KH - 1) - 1) // SH + 1
    OW = (W + l + r - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for oh in range(OH):
                for ow in range(OW):
                    for kh in range(KH):
                        for kw in range(KW):
                            ih, iw = oh * SH - t + kh * DH, ow * SW - l + kw * DW
                            if 0 <= ih < H and 0 <= iw < W:
                                y[n, o, oh, ow] += w[o, 0, kh, kw] * x[n, o // M, ih, iw]
    return y


def ref_grads(x, w, gy, stride, padding, dilation):
    """The same loops, accumulating gx and gw instead of y."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    M = O // C
    (SH, SW), ((t, _), (l, _)), (DH, DW) = stride, padding, dilation
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for n in range(N):
        for o in range(O):
            for oh in range(gy.shape[2]):
                for ow in range(gy.shape[3]):
                    for kh in range(KH):
                        for kw in range(KW):
                            ih, iw = oh * SH - t + kh * DH, ow * SW - l + kw * DW
                            if 0 <= ih < H and 0 <= iw < W:
                                gx[n, o // M, ih, iw] += w[o, 0, kh, kw] * gy[n, o, oh, ow]
                                gw[o, 0, kh, kw] += x[n, o // M, ih, iw] * gy[n, o, oh, ow]
    return gx, gw


CASES = [
    # x shape, multiplier, kernel, stride, padding ((top, bottom), (left, right)), dilation
    ((2, 3, 7, 6), 1, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 2, 8, 9), 3, (3, 2), (2, 1), ((1, 0), (0, 2)), (1, 2)),
    ((3, 2, 9, 7), 2, (2, 3), (1, 3), ((2, -1), (-1, 1)), (2, 1)),
    ((2, 4, 6, 6), 1, (5, 5), (2, 2), ((2, 2), (2, 2)), (1, 1)),
    ((1, 1, 5, 8), 2, (1, 1), (1, 2), ((0, 0), (0, 0)), (1, 1)),
    ((2, 3, 11, 10), 1, (3, 3), (3, 2), ((0, 1), (2, 0)), (2, 3)),
]


def make(case, dtype=np.float64, seed=0):
    xs, M, k, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((xs[1] * M, 1) + k).astype(dtype)
    return x, w, stride, padding, dilation


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_matches_loop_reference(path, case):
    x, w, stride, padding, dilation = make(case)
    y = run(path, D.depthwise_forward, x, w, stride, padding, dilation)
    np.testing.assert_allclose(y, ref_forward(x, w, stride, padding, dilation), rtol=1e-12, atol=1e-12)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    gx_ref, gw_ref = ref_grads(x, w, gy, stride, padding, dilation)
    gx = run(path, D.depthwise_input_grad, gy, w, x.shape, stride, padding, dilation)
    gw = run(path, D.depthwise_weight_grad, x, gy, w.shape, stride, padding, dilation)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-12, atol=1e-12)
    fx, fw = run(path, D.depthwise_backward, x, gy, w, stride, padding, dilation)
    np.testing.assert_array_equal(fx, gx)  # the fused backward is the same arithmetic
    np.testing.assert_array_equal(fw, gw)
    assert run(path, D.depthwise_backward, x, gy, w, stride, padding, dilation, need_weight_grad=False)[1] is None


@pytest.mark.parametrize("path", PATHS)
def test_dtype_preserved_and_non_contiguous_input(path):
    x, w, stride, padding, dilation = make(CASES[1], np.float32)
    xt = np.asfortranarray(x)[:, :, ::1]  # same values, other memory order
    y = run(path, D.depthwise_forward, xt, w, stride, padding, dilation)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref_forward(x, w, stride, padding, dilation), rtol=1e-5, atol=1e-5)


# ----- numba against NumPy --------------------------------------------------------------------
@pytest.mark.skipif(numba_module() is None, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_numba_equals_numpy(case, dtype):
    """Forward: the same additions in the same order, so bitwise equal. Gradients: sums in
    another order, equal to rounding; the input gradient is bitwise equal when M == 1."""
    x, w, stride, padding, dilation = make(case, dtype, seed=3)
    ys = [run(p, D.depthwise_forward, x, w, stride, padding, dilation) for p in ("numpy", "numba")]
    np.testing.assert_array_equal(ys[0], ys[1])
    gy = np.random.default_rng(4).standard_normal(ys[0].shape).astype(dtype)
    gs = [run(p, D.depthwise_backward, x, gy, w, stride, padding, dilation) for p in ("numpy", "numba")]
    tol = dict(rtol=1e-5, atol=1e-5 * np.abs(gs[0][1]).max()) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    if case[1] == 1:
        np.testing.assert_array_equal(gs[0][0], gs[1][0])
    else:
        np.testing.assert_allclose(gs[1][0], gs[0][0], **tol)
    np.testing.assert_allclose(gs[1][1], gs[0][1], **tol)


# ----- finite differences ---------------------------------------------------------------------
class _Depthwise(Function):
    def forward(self, x, w, stride, padding, dilation):
        self.x, self.w, self.geom = x, w, (stride, padding, dilation)
        return D.depthwise_forward(x, w, stride, padding, dilation)

    def backward(self, g):
        need = self.needs_input_grad
        gx, gw = D.depthwise_backward(self.x, g, self.w, *self.geom, need_input_grad=need[0],
                                      need_weight_grad=need[1])
        return gx, gw


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES[:3])
def test_gradients_finite_differences(path, case):
    x, w, stride, padding, dilation = make(case)
    with use_numba_disabled(path == "numpy"):
        check_gradients(lambda a, b: _Depthwise.apply(a, b, stride=stride, padding=padding, dilation=dilation), x, w)


# ----- PyTorch on random configurations ------------------------------------------------------
@st.composite
def configs(draw):
    C, M = draw(st.integers(1, 4)), draw(st.sampled_from([1, 1, 2, 3]))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    H = max(1, dilation[0] * (KH - 1) + 1 - sum(padding[0])) + draw(st.integers(0, 6))
    W = max(1, dilation[1] * (KW - 1) + 1 - sum(padding[1])) + draw(st.integers(0, 6))
    N = draw(st.integers(2, 3))
    return (N, C, H, W), M, (KH, KW), stride, padding, dilation, draw(st.booleans()), draw(st.integers(0, 2**31))


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=40)
@given(cfg=configs())
def test_against_torch(torch, path, cfg):
    xs, M, k, stride, padding, dilation, contiguous, seed = cfg
    x, w, *_ = make((xs, M, k, stride, padding, dilation), np.float32, seed)
    if not contiguous:  # a strided view of a larger array
        x = np.repeat(x, 2, axis=3)[..., ::2]
    (t, b), (l, r) = padding
    tx = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (l, r, t, b)), tw, stride=stride,
                                    dilation=dilation, groups=xs[1])
    gy = np.random.default_rng(seed + 1).standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(gy))
    y = run(path, D.depthwise_forward, x, w, stride, padding, dilation)
    gx, gw = run(path, D.depthwise_backward, x, gy, w, stride, padding, dilation)
    scale = 1e-5 * max(1.0, float(np.abs(ty.detach().numpy()).max()))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=scale)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-5, atol=1e-5 * max(1.0, np.abs(gx).max()))
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-4, atol=1e-5 * max(1.0, np.abs(gw).max()))


def test_rejects_non_depthwise_weight():
    x = np.zeros((1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"depthwise: weight must be \(C\*M, 1, KH, KW\).*C=3.*\(4, 1, 3, 3\)"):
        D.depthwise_forward(x, np.zeros((4, 1, 3, 3)))
    assert D.is_depthwise((1, 3, 5, 5), (6, 1, 3, 3), 3) and not D.is_depthwise((1, 3, 5, 5), (6, 3, 3, 3), 1)


# ----- the compiled path on random configurations, and its accuracy -----------------------------
@pytest.mark.skipif(numba_module() is None, reason="numba is not installed")
@settings(max_examples=40)
@given(cfg=configs(), dtype=st.sampled_from([np.float32, np.float64]))
def test_numba_equals_numpy_random(cfg, dtype):
    """Forward bitwise (same additions, same order); gradients to rounding (the input gradient
    bitwise when M == 1), over strides, dilations, multipliers and asymmetric padding."""
    xs, M, k, stride, padding, dilation, contiguous, seed = cfg
    x, w, *_ = make((xs, M, k, stride, padding, dilation), dtype, seed)
    if not contiguous:
        x = np.repeat(x, 2, axis=2)[:, :, ::2]
    ys = [run(p, D.depthwise_forward, x, w, stride, padding, dilation) for p in ("numpy", "numba")]
    np.testing.assert_array_equal(ys[0], ys[1])
    gy = np.random.default_rng(seed + 2).standard_normal(ys[0].shape).astype(dtype)
    geom = (stride, padding, dilation)
    (gx0, gw0), (gx1, gw1) = (run(p, D.depthwise_backward, x, gy, w, *geom) for p in ("numpy", "numba"))
    eps = np.finfo(dtype).eps
    if M == 1:
        np.testing.assert_array_equal(gx1, gx0)
    np.testing.assert_allclose(gx1, gx0, rtol=8 * eps, atol=8 * eps * max(1.0, np.abs(gx0).max()))
    np.testing.assert_allclose(gw1, gw0, rtol=64 * eps, atol=64 * eps * max(1.0, np.abs(gw0).max()))
    # each gradient alone equals its part of the fused pass
    np.testing.assert_array_equal(run("numba", D.depthwise_input_grad, gy, w, x.shape, stride, padding, dilation), gx1)
    np.testing.assert_array_equal(run("numba", D.depthwise_weight_grad, x, gy, w.shape, stride, padding, dilation), gw1)


@pytest.mark.skipif(numba_module() is None, reason="numba is not installed")
def test_numba_weight_grad_accuracy_float32():
    """Sums of ~6000 float32 products per weight: the error, relative to the sum of |terms|,
    stays far below float32's eps (blocked partial sums, not one long running sum)."""
    x, w, stride, padding, dilation = make(((6, 3, 33, 31), 2, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)), np.float32, 5)
    gy = np.random.default_rng(6).standard_normal((6, 6, 33, 31)).astype(np.float32)
    exact = _weight_grad_f64(x, gy, w.shape, stride, padding, dilation)
    gw = run("numba", D.depthwise_weight_grad, x, gy, w.shape, stride, padding, dilation)
    scale = _weight_grad_f64(np.abs(x), np.abs(gy), w.shape, stride, padding, dilation)  # sum of |terms|
    assert np.max(np.abs(gw - exact) / scale) < 3e-8  # NumPy's float32 path: 1.4e-7 here


def _weight_grad_f64(x, gy, w_shape, stride, padding, dilation):
    return D._weight_grad_numpy(x.astype(np.float64), gy.astype(np.float64), w_shape, stride, padding, dilation)


# ----- conv2d's backward: the fused depthwise pass wired into autograd ---------------------------
def _conv2d_grads(x, w, b, gy, **args):
    import atrous
    import atrous.functional as F

    X, W, B = (atrous.Tensor(a, requires_grad=True) for a in (x, w, b))
    F.conv2d(X, W, B, **args).backward(gy)
    return X.grad, W.grad, B.grad


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=25)
@given(data=st.data())
def test_conv2d_gradients_against_torch(torch, path, data):
    """conv2d gradients through autograd equal PyTorch's, depthwise (fused backward) or not."""
    C = data.draw(st.integers(1, 4))
    groups = data.draw(st.sampled_from([1, C]))
    M = data.draw(st.integers(1, 3))
    O = C * M if groups == C else data.draw(st.integers(1, 4))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    H = W = max(d * (kk - 1) + 1 for d, kk in zip(dilation, k)) + data.draw(st.integers(0, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.standard_normal((data.draw(st.integers(2, 3)), C, H, W)).astype(np.float32)
    w = rng.standard_normal((O, C // groups) + k).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **args)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(gy))
    with use_numba_disabled(path == "numpy"):
        grads = _conv2d_grads(x, w, b, gy, **args)
    for got, want in zip(grads, (tx.grad, tw.grad, tb.grad)):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_conv2d_backward_runs_the_fused_depthwise_pass(monkeypatch):
    """Both gradients of a depthwise conv2d come from one depthwise_backward call; a
    non-depthwise conv, one gradient alone, or a forced 'gemm' take the separate ops."""
    from atrous.kernels import algorithms

    calls = []
    fused = D.depthwise_backward
    monkeypatch.setattr(D, "depthwise_backward", lambda *a, **k: calls.append("fused") or fused(*a, **k))
    for op in ("depthwise_input_grad", "depthwise_weight_grad"):
        real = getattr(D, op)
        monkeypatch.setattr(D, op, lambda *a, _r=real, _op=op, **k: calls.append(_op) or _r(*a, **k))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    gy = rng.standard_normal((2, 6, 6, 6)).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    geom = ((1, 1), ((1, 1), (1, 1)), (1, 1), 3)
    gx, gw = algorithms.run_backward(x, gy, w, *geom, True, True)
    assert calls == ["fused"]
    ref = D.depthwise_backward(x, gy, w, *geom[:3])
    np.testing.assert_array_equal(gx, ref[0])
    np.testing.assert_array_equal(gw, ref[1])
    calls.clear()
    gx, gw = algorithms.run_backward(x, gy, w, *geom, False, True)
    assert gx is None and calls == ["depthwise_weight_grad"]
    calls.clear()
    with algorithms.use_algorithm("gemm"):
        gx2, gw2 = algorithms.run_backward(x, gy, w, *geom, True, True)
    assert calls == []
    np.testing.assert_allclose(gx2, ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw2, ref[1], rtol=1e-5, atol=1e-4)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # groups=1: not depthwise
    gx, gw = algorithms.run_backward(x, gy[:, :4], w1, (1, 1), ((1, 1), (1, 1)), (1, 1), 1, True, True)
    assert calls == [] and gx.shape == x.shape and gw.shape == w1.shape
    # and conv2d's autograd goes through it
    _conv2d_grads(x, w, rng.standard_normal(6).astype(np.float32), gy, padding=1, groups=3)
    assert calls == ["fused"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES[:3])
def test_bias_added_in_the_forward_equals_adding_after(path, case):
    """depthwise_forward(bias=b) is conv + b (the same float operations: bitwise), and conv2d
    with a bias on a depthwise geometry goes through it."""
    x, w, stride, padding, dilation = make(case, np.float32)
    b = np.random.default_rng(2).standard_normal(w.shape[0]).astype(np.float32)
    y = run(path, D.depthwise_forward, x, w, stride, padding, dilation)
    yb = run(path, D.depthwise_forward, x, w, stride, padding, dilation, b)
    np.testing.assert_array_equal(yb, y + b.reshape(1, -1, 1, 1))


def test_conv2d_forward_adds_the_bias_in_the_depthwise_kernel(monkeypatch):
    import atrous.functional as F
    from atrous.kernels import algorithms

    seen = []
    real = D.depthwise_forward
    monkeypatch.setattr(D, "depthwise_forward", lambda *a, **k: seen.append(k.get("bias") is not None) or real(*a, **k))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    y = F.conv2d(x, w, b, padding=1, groups=3).numpy()
    assert seen == [True]
    with algorithms.use_algorithm("gemm"):
        ref = F.conv2d(x, w, b, padding=1, groups=3).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
