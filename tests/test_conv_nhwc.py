"""Channels-last im2col + GEMM (``kernels.conv_nhwc``): its columns against a plain loop, its
three operations against a loop convolution (float64), the NCHW GEMM engine and PyTorch on random
geometries (stride, dilation, asymmetric and negative padding), chunking, and conv2d forced onto
it through autograd with float64 finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from atrous.kernels import conv_gemm, conv_nhwc, mec
from atrous.kernels.algorithms import use_algorithm
from gradcheck import check_gradients


def loop_im2col(x, kernel, stride, padding, dilation):
    """Row (n, oh, ow), column (kh, kw, c): one value at a time, zero outside the image."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (DH, DW) = kernel, stride, dilation
    (t, b), (l, r) = padding
    OH = (H + t + b - DH * (KH - 1) - 1) // SH + 1
    OW = (W + l + r - DW * (KW - 1) - 1) // SW + 1
    cols = np.zeros((N * OH * OW, KH * KW * C), x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                for kh in range(KH):
                    for kw in range(KW):
                        ih, iw = oh * SH + kh * DH - t, ow * SW + kw * DW - l
                        if 0 <= ih < H and 0 <= iw < W:
                            cols[(n * OH + oh) * OW + ow, (kh * KW + kw) * C : (kh * KW + kw + 1) * C] = x[n, :, ih, iw]
    return cols


def loop_conv(x, w, stride, padding, dilation):
    """float64 cross-correlation from the loop columns: y[n, o, oh, ow] = <row, w[o] in (kh, kw, c)>."""
    N = x.shape[0]
    O, C, KH, KW = w.shape
    cols = loop_im2col(x.astype(np.float64), (KH, KW), stride, padding, dilation)
    rows = cols @ w.astype(np.float64).transpose(0, 2, 3, 1).reshape(O, -1).T
    (t, b), (l, r) = padding
    OH = (x.shape[2] + t + b - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (x.shape[3] + l + r - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    return rows.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)


def test_im2col_layout_small_example():
    x = np.arange(8.0).reshape(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    np.testing.assert_array_equal(conv_nhwc.im2col(x, (2, 2)), [[0, 4, 1, 5, 2, 6, 3, 7]])


geometry = st.tuples(
    st.integers(1, 3),  # N
    st.integers(1, 5),  # C
    st.integers(1, 4),  # O
    st.integers(1, 4), st.integers(1, 4),  # KH, KW
    st.integers(1, 3), st.integers(1, 3),  # stride
    st.integers(1, 2), st.integers(1, 2),  # dilation
    st.tuples(*[st.integers(-1, 3)] * 4),  # padding t, b, l, r (negative crops)
    st.integers(0, 5), st.integers(0, 5),  # extra H, W beyond the dilated kernel
)


def _draw(g, rng, dtype=np.float32):
    N, C, O, KH, KW, SH, SW, DH, DW, (t, b, l, r), eh, ew = g
    H = max(1, DH * (KH - 1) + 1 + eh - t - b)
    W = max(1, DW * (KW - 1) + 1 + ew - l - r)
    if H + t + b < DH * (KH - 1) + 1 or W + l + r < DW * (KW - 1) + 1:
        return None
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, KH, KW)).astype(dtype)
    return x, w, (SH, SW), ((t, b), (l, r)), (DH, DW)


@settings(max_examples=60, deadline=None)
@given(geometry, st.integers(0, 2**31 - 1))
def test_im2col_and_ops_equal_loop_and_gemm_engine(g, seed):
    rng = np.random.default_rng(seed)
    drawn = _draw(g, rng, np.float64)
    if drawn is None:
        return
    x, w, stride, padding, dilation = drawn
    np.testing.assert_array_equal(
        conv_nhwc.im2col(x, w.shape[2:], stride, padding, dilation), loop_im2col(x, w.shape[2:], stride, padding, dilation)
    )
    check_ops_against_loop_and_gemm(conv_nhwc, x, w, stride, padding, dilation, rng)


def check_ops_against_loop_and_gemm(engine, x, w, stride, padding, dilation, rng):
    """float64: ``engine``'s forward against the loop convolution, its two gradients against the
    NCHW GEMM engine's."""
    y = engine.forward(x, w, stride, padding, dilation)
    np.testing.assert_allclose(y, loop_conv(x, w, stride, padding, dilation), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    args = (stride, padding, dilation, 1)
    np.testing.assert_allclose(
        engine.weight_grad(x, gy, w.shape[2:], *args),
        conv_gemm.weight_grad(x, gy, w.shape[2:], *args, algorithm="gemm"), rtol=1e-11, atol=1e-11,
    )
    np.testing.assert_allclose(
        engine.input_grad(gy, w, x.shape[2:], *args),
        conv_gemm.input_grad(gy, w, x.shape[2:], *args, algorithm="gemm"), rtol=1e-11, atol=1e-11,
    )


def check_forced_algorithm_against_torch(torch, name, g, seed):
    """conv2d with its bias, forced onto algorithm ``name``, forward and all three gradients
    against torch's on the geometry ``g`` (symmetric, non-negative padding only, as torch)."""
    rng = np.random.default_rng(seed)
    drawn = _draw(g, rng)
    if drawn is None:
        return
    x, w, stride, padding, dilation = drawn
    (t, b), (l, r) = padding
    if min(t, b, l, r) < 0 or t != b or l != r:
        return
    b_ = rng.standard_normal(w.shape[0]).astype(np.float32)
    X, W, B = (Tensor(a, requires_grad=True) for a in (x, w, b_))
    with use_algorithm(name):
        y = F.conv2d(X, W, B, stride=stride, padding=(t, l), dilation=dilation)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(gy)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b_))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=(t, l), dilation=dilation)
    ty.backward(torch.from_numpy(gy))
    for got, want in ((y.data, ty), (X.grad, tx.grad), (W.grad, tw.grad), (B.grad, tb.grad)):
        want = want.detach().numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()))


@settings(max_examples=40, deadline=None)
@given(geometry, st.integers(0, 2**31 - 1))
def test_conv2d_forced_onto_channels_last_equals_torch(torch, g, seed):
    check_forced_algorithm_against_torch(torch, "gemm_nhwc", g, seed)


def test_chunked_equals_whole(rng, monkeypatch):
    x = rng.standard_normal((7, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    whole = conv_nhwc.forward(x, w, (1, 1), pad)
    gy = rng.standard_normal(whole.shape).astype(np.float32)
    gw_whole = conv_nhwc.weight_grad(x, gy, (3, 3), (1, 1), pad)
    monkeypatch.setattr(atrous.config, "workspace_bytes", 1)  # one block (here one image) per chunk
    assert conv_nhwc._plan(x.shape, (3, 3), 5, (9, 8), pad, 4) == (7, 7)  # 7 images of 72 columns
    monkeypatch.setattr(conv_gemm, "GEMM_COLUMNS", 1)
    assert conv_nhwc._plan(x.shape, (3, 3), 5, (9, 8), pad, 4) == (1, 1)
    np.testing.assert_array_equal(conv_nhwc.forward(x, w, (1, 1), pad), whole)
    monkeypatch.setattr(conv_gemm, "GEMM_COLUMNS", 2048)
    np.testing.assert_array_equal(conv_nhwc.weight_grad(x, gy, (3, 3), (1, 1), pad), gw_whole)


# The two engines with channels-last lowering: this module's and MEC (tests/test_mec.py).
ENGINES = [("gemm_nhwc", conv_nhwc), ("mec", mec)]


@pytest.mark.parametrize("name, engine", ENGINES)
def test_empty_batch(rng, name, engine):
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    assert engine.forward(x, w).shape == (0, 4, 3, 3)
    gw = engine.weight_grad(x, np.zeros((0, 4, 3, 3), np.float32), (3, 3))
    assert gw.shape == (4, 3, 3, 3) and not gw.any()


@pytest.mark.parametrize("name, engine", ENGINES)
def test_float64_gradients_through_conv2d(rng, name, engine):
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    with use_algorithm(name):
        check_gradients(lambda X, W, B: F.conv2d(X, W, B, stride=(2, 1), padding=(1, 0), dilation=(1, 2)), x, w, b)
        check_gradients(lambda X, W, B: F.conv2d(X, W, B, stride=(1, 1), padding=1), x, w, b)


def test_heuristic_sends_small_layers_here():
    from atrous.kernels import algorithms
    from atrous.kernels._numba import enabled as numba_enabled

    h = algorithms.heuristic
    pad = ((1, 1), (1, 1))
    for op in algorithms.OPS:
        # 3x3 stride 1 with 64+ channels goes to Winograd where its compiled transforms exist
        wino = "winograd_nhwc" if numba_enabled() else "gemm_nhwc"
        assert h(op, (32, 64, 16, 16), (64, 64, 3, 3), (1, 1), pad, (1, 1), 1) == wino
        assert h(op, (32, 64, 16, 16), (64, 64, 5, 5), (1, 1), pad, (1, 1), 1) == "gemm_nhwc"
        assert h(op, (32, 64, 8, 8), (128, 64, 3, 3), (2, 2), pad, (1, 1), 1) == "gemm_nhwc"
        assert h(op, (8, 256, 14, 14), (256, 256, 3, 3), (2, 2), pad, (1, 1), 1) == "gemm_nhwc"
        assert h(op, (8, 512, 7, 7), (512, 512, 5, 5), (1, 1), pad, (1, 1), 1) == "gemm"  # many channels
        assert h(op, (32, 64, 32, 32), (64, 64, 5, 5), (1, 1), pad, (1, 1), 1) == "gemm"  # large images
        assert h(op, (32, 16, 16, 16), (32, 16, 1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1) == "gemm"
    # an RGB input layer: runs of 3*3 values are too short; its input gradient (64 channels) is not
    assert h("forward", (32, 3, 16, 16), (64, 3, 3, 3), (1, 1), pad, (1, 1), 1) == "gemm"
    assert h("weight_grad", (32, 3, 16, 16), (64, 3, 3, 3), (1, 1), pad, (1, 1), 1) == "gemm"
    assert h("input_grad", (32, 3, 16, 16), (64, 3, 3, 3), (1, 1), pad, (1, 1), 1) == "gemm_nhwc"
