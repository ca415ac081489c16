"""Winograd F(2x2,3x3) and F(4x4,3x3): the transform matrices against 1-D correlation, the
kernels against a direct convolution written in the test (float64) and the GEMM path
(float32), conv2d/conv_transpose2d forced onto Winograd against PyTorch, chunking, and float64
finite differences through the Winograd path."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from atrous.kernels import conv_gemm, winograd
from atrous.kernels.algorithms import use_algorithm
from gradcheck import check_gradients

# the algorithm names behind conv2d, NCHW and channels-last tiles (kernels.winograd_nhwc)
TILES = [(2, "winograd"), (4, "winograd_f4"), (2, "winograd_nhwc_f2"), (4, "winograd_nhwc")]


# ----- independent references -----------------------------------------------------------------
def direct_conv(x, w, padding):
    """3x3 stride-1 cross-correlation as a sum of 9 shifted slices (negative padding crops)."""
    (t, b), (l, r) = padding
    H, W = x.shape[2:]
    xp = np.pad(x[:, :, max(-t, 0) : H - max(-b, 0), max(-l, 0) : W - max(-r, 0)],
                ((0, 0), (0, 0), (max(t, 0), max(b, 0)), (max(l, 0), max(r, 0))))
    OH, OW = xp.shape[2] - 2, xp.shape[3] - 2
    y = np.zeros((x.shape[0], w.shape[0], OH, OW))
    for kh in range(3):
        for kw in range(3):
            y += np.einsum("nchw,oc->nohw", xp[:, :, kh : kh + OH, kw : kw + OW], w[:, :, kh, kw])
    return y


def direct_grads(x, w, gy, padding):
    """(gx, gw) of direct_conv by the chain rule written tap by tap."""
    (t, b), (l, r) = padding
    N, C, H, W = x.shape
    OH, OW = gy.shape[2:]
    # Work on a fully padded canvas (crops as padding of 0), then cut the input window out.
    T, L = max(t, 0), max(l, 0)
    canvas = np.zeros((N, C, H + T + max(b, 0), W + L + max(r, 0)))
    canvas[:, :, T : T + H, L : L + W] = x
    h0, w0 = T - t, L - l  # canvas offset of padded row/column 0
    gw = np.zeros_like(w)
    gxp = np.zeros_like(canvas)
    for kh in range(3):
        for kw in range(3):
            win = canvas[:, :, h0 + kh : h0 + kh + OH, w0 + kw : w0 + kw + OW]
            gw[:, :, kh, kw] = np.einsum("nohw,nchw->oc", gy, win)
            gxp[:, :, h0 + kh : h0 + kh + OH, w0 + kw : w0 + kw + OW] += np.einsum("nohw,oc->nchw", gy, w[:, :, kh, kw])
    return gxp[:, :, T : T + H, L : L + W], gw


# (N, C, H, W), O, padding ((top, bottom), (left, right))
CASES = [
    ((2, 3, 7, 6), 4, ((1, 1), (1, 1))),
    ((3, 2, 5, 9), 3, ((0, 0), (0, 0))),
    ((2, 3, 8, 8), 2, ((2, 0), (0, 1))),
    ((1, 2, 6, 7), 3, ((-1, 2), (1, -1))),  # crops
    ((2, 1, 3, 3), 1, ((0, 0), (0, 0))),  # one output pixel
    ((2, 4, 9, 11), 5, ((3, 1), (2, 2))),  # padding wider than the kernel
]


@pytest.mark.parametrize("m", winograd.TILES)
def test_matrices_compute_1d_correlation(m, rng):
    BT, G, AT = winograd.matrices(m)
    for _ in range(5):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        expected = [d[i : i + 3] @ g for i in range(m)]
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("shape,O,padding", CASES)
def test_kernels_match_direct_reference_float64(m, shape, O, padding, rng):
    x = rng.standard_normal(shape)
    w = rng.standard_normal((O, shape[1], 3, 3))
    y = winograd.forward(x, w, padding, m)
    expected = direct_conv(x, w, padding)
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-11)
    gy = rng.standard_normal(y.shape)
    gx_ref, gw_ref = direct_grads(x, w, gy, padding)
    np.testing.assert_allclose(winograd.input_grad(gy, w, shape[2:], padding, m), gx_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(winograd.weight_grad(x, gy, padding, m), gw_ref, rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("shape,O,padding", CASES)
def test_float32_matches_gemm_path(m, shape, O, padding, rng):
    """float32: Winograd and GEMM agree to float32 rounding, both near the float64 result."""
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((O, shape[1], 3, 3)).astype(np.float32)
    y = winograd.forward(x, w, padding, m)
    assert y.dtype == np.float32
    y_gemm = conv_gemm.forward(x, w, (1, 1), padding, algorithm="gemm")
    scale = np.abs(direct_conv(x.astype(np.float64), w.astype(np.float64), padding)).max()
    tol = (2e-6 if m == 2 else 1e-5) * scale
    np.testing.assert_allclose(y, y_gemm, rtol=0, atol=tol)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = winograd.input_grad(gy, w, shape[2:], padding, m)
    gx_gemm = conv_gemm.input_grad(gy, w, shape[2:], (1, 1), padding, algorithm="gemm")
    np.testing.assert_allclose(gx, gx_gemm, rtol=0, atol=tol * np.abs(gx_gemm).max() / max(scale, 1e-30) + 1e-6)
    gw = winograd.weight_grad(x, gy, padding, m)
    gw_gemm = conv_gemm.weight_grad(x, gy, (3, 3), (1, 1), padding, algorithm="gemm")
    assert gw.dtype == np.float32
    np.testing.assert_allclose(gw, gw_gemm, rtol=0, atol=(3e-6 if m == 2 else 2e-5) * np.abs(gw_gemm).max())


@pytest.mark.parametrize("m", winograd.TILES)
def test_chunked_equals_unchunked(m, rng, monkeypatch):
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    y, gw = winograd.forward(x, w, pad, m), winograd.weight_grad(x, x[:, :1].repeat(4, 1), pad, m)
    monkeypatch.setattr(atrous.config, "workspace_bytes", 1)  # one image per chunk
    np.testing.assert_array_equal(winograd.forward(x, w, pad, m), y)
    np.testing.assert_allclose(winograd.weight_grad(x, x[:, :1].repeat(4, 1), pad, m), gw, rtol=1e-5, atol=1e-5)


def test_supports_only_3x3_stride1():
    assert winograd.supports((4, 3, 3, 3))
    assert not winograd.supports((4, 3, 3, 3), stride=(2, 2))
    assert not winograd.supports((4, 3, 3, 3), dilation=(2, 1))
    assert not winograd.supports((4, 1, 3, 3), groups=3)
    assert not winograd.supports((4, 3, 5, 5))
    with pytest.raises(ValueError, match="tile m"):
        winograd.matrices(3)


# ----- through the public ops, against PyTorch and finite differences --------------------------
@pytest.mark.parametrize("m,name", TILES)
@settings(max_examples=12)
@given(
    n=st.integers(1, 3), c=st.integers(1, 5), o=st.integers(1, 5),
    h=st.integers(3, 11), w=st.integers(3, 11), p=st.integers(0, 2),
    layout=st.sampled_from(["nchw", "transposed", "channels_last"]), data=st.data(),
)
def test_conv2d_forced_winograd_vs_torch(torch, m, name, n, c, o, h, w, p, layout, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if layout == "transposed":  # a non-contiguous input
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    elif layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    X, W, B = (Tensor(np.array(a), requires_grad=True) for a in (x, wt, b))
    with use_algorithm(name):
        y = F.conv2d(X, W, B, padding=p)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(gy)
    tx, tw, tb = (torch.tensor(np.array(a), requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=p)
    ty.backward(torch.from_numpy(gy))
    tol = 2e-5 if m == 2 else 1e-4
    for got, ref in ((y.data, ty), (X.grad, tx.grad), (W.grad, tw.grad), (B.grad, tb.grad)):
        ref = ref.detach().numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("m,name", TILES)
def test_conv_transpose2d_forced_winograd_vs_gemm(m, name, rng):
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    out = {}
    for alg in ("gemm", name):
        X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        with use_algorithm(alg):
            y = F.conv_transpose2d(X, W, padding=1)
            y.backward(np.ones(y.shape, np.float32))
        out[alg] = (y.data, X.grad, W.grad)
    for got, ref in zip(out[name], out["gemm"]):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("name", [n for _, n in TILES])
@pytest.mark.parametrize("padding", [0, 1, "same"])
def test_finite_differences_through_winograd(name, padding, rng):
    x = rng.standard_normal((2, 2, 5, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    with use_algorithm(name):
        check_gradients(lambda X, W, B: F.conv2d(X, W, B, padding=padding), x, w, b)


def _numba_or_skip():
    from atrous.kernels._numba import enabled

    if not enabled():
        pytest.skip("numba is not installed (pip install 'atrous[fast]') or is disabled")


@pytest.mark.parametrize("m", winograd.TILES)
def test_compiled_1d_transforms_equal_matrices(m, rng):
    """The written-out B^T, A^T and A of the compiled passes against the matrices above."""
    _numba_or_skip()
    BT, _, AT = winograd.matrices(m)
    bt, at, a_ = {2: (winograd._bt2, winograd._at2, winograd._a2), 4: (winograd._bt4, winograd._at4, winograd._a4)}[m]
    for _ in range(3):
        d, mm, g = rng.standard_normal(m + 2), rng.standard_normal(m + 2), rng.standard_normal(m)
        np.testing.assert_allclose(bt(*d), BT @ d, rtol=1e-14, atol=1e-13)
        np.testing.assert_allclose(at(*mm), AT @ mm, rtol=1e-14, atol=1e-13)
        np.testing.assert_allclose(a_(*g), AT.T @ g, rtol=1e-14, atol=1e-13)


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("shape,O,padding", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_transforms_equal_numpy_path(m, shape, O, padding, dtype, rng):
    """forward, input_grad and weight_grad: the numba passes against the NumPy reference."""
    from atrous.kernels._numba import use_numba_disabled

    _numba_or_skip()
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((O, shape[1], 3, 3)).astype(dtype)
    y = winograd.forward(x, w, padding, m)
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = (y, winograd.input_grad(gy, w, shape[2:], padding, m), winograd.weight_grad(x, gy, padding, m))
    with use_numba_disabled():
        y_np = winograd.forward(x, w, padding, m)
        ref = (y_np, winograd.input_grad(gy, w, shape[2:], padding, m), winograd.weight_grad(x, gy, padding, m))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(got, ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("numba", [True, False])
def test_partial_last_chunk(m, numba, rng, monkeypatch):
    """Chunks of 2 images over a batch of 5 (the last chunk short) give the unchunked result."""
    from atrous.kernels._numba import use_numba_disabled

    if numba:
        _numba_or_skip()
    x = rng.standard_normal((5, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((5, 4, 9, 7)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    with use_numba_disabled(not numba):
        y, gw = winograd.forward(x, w, pad, m), winograd.weight_grad(x, gy, pad, m)
        monkeypatch.setattr(winograd, "_chunk", lambda N, per_image, itemsize: 2)
        np.testing.assert_array_equal(winograd.forward(x, w, pad, m), y)
        np.testing.assert_allclose(winograd.weight_grad(x, gy, pad, m), gw, rtol=0, atol=1e-5 * np.abs(gw).max())
    np.testing.assert_allclose(y, direct_conv(x.astype(np.float64), w.astype(np.float64), pad), rtol=0, atol=1e-4 * np.abs(y).max())
