"""Dilated convolution over the input's phases (``kernels.space_to_batch``): the phase split
against a plain loop, when it applies, its three operations against the float64 loop
convolution of test_conv_algorithms (with each dilation-1 algorithm underneath), conv2d with
dilation routed through it against PyTorch, and float64 finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from atrous.kernels import algorithms, space_to_batch
from atrous.kernels.algorithms import use_algorithm
from atrous.layout import channels_last_order
from gradcheck import check_gradients
from test_conv_algorithms import _loop_conv


def test_phases_against_a_loop(rng):
    x = rng.standard_normal((2, 3, 6, 8))
    p = space_to_batch.to_batch(x, (2, 4))
    assert p.shape == (16, 3, 3, 2) and channels_last_order(p) is not None
    for ph in range(2):
        for pw in range(4):
            for n in range(2):
                for h in range(3):
                    for w in range(2):
                        np.testing.assert_array_equal(p[(ph * 4 + pw) * 2 + n, :, h, w], x[n, :, h * 2 + ph, w * 4 + pw])
    np.testing.assert_array_equal(space_to_batch.from_batch(p, (2, 4)), x)


def test_supports_even_phases_only():
    w = (4, 3, 3, 3)
    assert space_to_batch.supports((1, 3, 8, 8), w, (1, 1), ((2, 2), (2, 2)), (2, 2), 1)
    assert space_to_batch.supports((1, 3, 9, 8), w, (1, 1), ((3, 0), (0, 2)), (3, 2), 1)
    assert not space_to_batch.supports((1, 3, 8, 8), w, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)  # not dilated
    assert not space_to_batch.supports((1, 3, 8, 8), w, (2, 2), ((2, 2), (2, 2)), (2, 2), 1)  # strided
    assert not space_to_batch.supports((1, 3, 9, 8), w, (1, 1), ((2, 2), (2, 2)), (2, 2), 1)  # odd height
    assert not space_to_batch.supports((1, 3, 8, 8), w, (1, 1), ((1, 1), (2, 2)), (2, 2), 1)  # odd padding


# (N, C, H, W), (O, C/G, KH, KW), padding, dilation, groups
CASES = [
    ((2, 4, 8, 6), (5, 4, 3, 3), ((2, 2), (2, 0)), (2, 2), 1),
    ((3, 3, 9, 8), (2, 3, 3, 3), ((3, 0), (2, 2)), (3, 2), 1),
    ((2, 4, 8, 8), (4, 2, 3, 3), ((2, 2), (2, 2)), (2, 2), 2),
    ((1, 2, 8, 12), (3, 2, 2, 5), ((0, 2), (4, 4)), (2, 2), 1),
]
INNER = ["gemm", "gemm_nhwc", "winograd_nhwc", "winograd_nhwc_f2", "fft"]


def _ops(x, w, gy, padding, dilation, groups):
    args = ((1, 1), padding, dilation, groups)
    return (space_to_batch.forward(x, w, *args), space_to_batch.input_grad(gy, w, x.shape[2:], *args),
            space_to_batch.weight_grad(x, gy, w.shape[2:], *args))


def _loop_grads(x, w, gy, padding, dilation, groups):
    """(gx, gw) of the loop convolution by its linearity: gx[i] = sum_y gy * dy/dx[i]."""
    gx = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = 1
        gx[i] = (gy * _loop_conv(e, w, (1, 1), padding, dilation, groups)).sum()
    gw = np.zeros_like(w)
    for i in np.ndindex(*w.shape):
        e = np.zeros_like(w)
        e[i] = 1
        gw[i] = (gy * _loop_conv(x, e, (1, 1), padding, dilation, groups)).sum()
    return gx, gw


@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("x_shape,w_shape,padding,dilation,groups", CASES)
def test_matches_loop_reference(inner, x_shape, w_shape, padding, dilation, groups, rng):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    y_ref = _loop_conv(x, w, (1, 1), padding, dilation, groups)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref = _loop_grads(x, w, gy, padding, dilation, groups)
    with use_algorithm(inner):  # the undilated convolution of the phases (GEMM where it does not apply)
        y, gx, gw = _ops(x, w, gy, padding, dilation, groups)
    for got, ref in ((y, y_ref), (gx, gx_ref), (gw, gw_ref)):
        assert got.shape == ref.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11 * max(1.0, np.abs(ref).max()))


def test_negative_padding_crops_as_the_gemm_path(rng):
    from atrous.kernels import conv_gemm

    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    pad, dil = ((-2, 2), (2, -2)), (2, 2)
    y = conv_gemm.forward(x, w, (1, 1), pad, dil, algorithm="gemm")
    gy = rng.standard_normal(y.shape)
    ref = (y, conv_gemm.input_grad(gy, w, x.shape[2:], (1, 1), pad, dil),
           conv_gemm.weight_grad(x, gy, (3, 3), (1, 1), pad, dil, algorithm="gemm"))
    for got, want in zip(_ops(x, w, gy, pad, dil, 1), ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_float32_and_the_heuristic_route(rng, monkeypatch):
    x = rng.standard_normal((2, 64, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    chosen = []
    real = algorithms.select

    def spy(op, x_shape, w_shape, dtype, stride, padding, dilation, groups, channels_last=False):
        name = real(op, x_shape, w_shape, dtype, stride, padding, dilation, groups, channels_last)
        chosen.append((name, tuple(dilation), x_shape))
        return name

    monkeypatch.setattr(algorithms, "select", spy)
    y = F.conv2d(x, w, padding=2, dilation=2).numpy()
    y_ref = _loop_conv(x.astype(np.float64), w.astype(np.float64), (1, 1), ((2, 2), (2, 2)), (2, 2), 1)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=3e-5 * np.abs(y_ref).max())
    if algorithms.heuristic("forward", x.shape, w.shape, (1, 1), ((2, 2), (2, 2)), (2, 2), 1) == "space_to_batch":
        # numba present: the layer splits, and its 4 phases (a batch of 8) go to Winograd undilated
        assert chosen == [("space_to_batch", (2, 2), (2, 64, 16, 16)), ("winograd_nhwc", (1, 1), (8, 64, 8, 8))]


@settings(max_examples=15)
@given(
    n=st.integers(1, 2), c=st.integers(1, 6), o=st.integers(1, 6), k=st.integers(1, 4),
    d=st.integers(2, 3), hq=st.integers(2, 5), wq=st.integers(2, 5), pq=st.integers(0, 2), data=st.data(),
)
def test_conv2d_forced_vs_torch(torch, n, c, o, k, d, hq, wq, pq, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.standard_normal((n, c, hq * d, wq * d)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    pad = pq * d
    if hq * d + 2 * pad < d * (k - 1) + 1 or wq * d + 2 * pad < d * (k - 1) + 1:
        return  # no output
    X, W, B = (Tensor(a, requires_grad=True) for a in (x, wt, b))
    with use_algorithm("space_to_batch"):
        y = F.conv2d(X, W, B, padding=pad, dilation=d)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=pad, dilation=d)
    ty.backward(torch.from_numpy(gy))
    for got, ref in ((y.data, ty), (X.grad, tx.grad), (W.grad, tw.grad), (B.grad, tb.grad)):
        ref = ref.detach().numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * max(1.0, np.abs(ref).max()))


def test_finite_differences(rng):
    x = rng.standard_normal((2, 2, 6, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    with use_algorithm("space_to_batch"):
        check_gradients(lambda X, W, B: F.conv2d(X, W, B, padding=2, dilation=2), x, w, b)
    assert atrous.config.conv_algorithm == "auto"
