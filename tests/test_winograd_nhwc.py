"""Winograd on channels-last tiles (``kernels.winograd_nhwc``): its three operations against the
direct convolution written in test_winograd (float64) and the GEMM path (float32), on both its
compiled and NumPy transforms, each compiled transform against the NumPy one, the channels-last
output, and chunking."""
import numpy as np
import pytest

import atrous
from atrous.kernels import conv_gemm, winograd_nhwc
from atrous.kernels._numba import enabled as numba_enabled
from atrous.kernels._numba import use_numba_disabled
from atrous.layout import channels_last_order
from test_winograd import CASES, direct_conv, direct_grads

PATHS = ["compiled", "numpy"]


def _path(path):
    """A context that runs the NumPy transforms, or the compiled ones (skipped without numba)."""
    if path == "compiled" and not numba_enabled():
        pytest.skip("numba is not installed (pip install 'atrous[fast]') or is disabled")
    return use_numba_disabled(path == "numpy")


def _ops(x, w, gy, padding, m):
    args = ((1, 1), padding, (1, 1), 1)
    return (winograd_nhwc.forward(x, w, *args, m=m),
            winograd_nhwc.input_grad(gy, w, x.shape[2:], *args, m=m),
            winograd_nhwc.weight_grad(x, gy, (3, 3), *args, m=m))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("m", winograd_nhwc.TILES)
@pytest.mark.parametrize("shape,O,padding", CASES)
def test_matches_direct_reference_float64(path, m, shape, O, padding, rng):
    x = rng.standard_normal(shape)
    w = rng.standard_normal((O, shape[1], 3, 3))
    y_ref = direct_conv(x, w, padding)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref = direct_grads(x, w, gy, padding)
    with _path(path):
        y, gx, gw = _ops(x, w, gy, padding, m)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("m", winograd_nhwc.TILES)
@pytest.mark.parametrize("shape,O,padding", CASES)
def test_float32_matches_gemm_path(path, m, shape, O, padding, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((O, shape[1], 3, 3)).astype(np.float32)
    gy = rng.standard_normal(direct_conv(x, w, padding).shape).astype(np.float32)
    with _path(path):
        got = _ops(x, w, gy, padding, m)
    ref = (conv_gemm.forward(x, w, (1, 1), padding, algorithm="gemm"),
           conv_gemm.input_grad(gy, w, shape[2:], (1, 1), padding, algorithm="gemm"),
           conv_gemm.weight_grad(x, gy, (3, 3), (1, 1), padding, algorithm="gemm"))
    tol = 2e-6 if m == 2 else 2e-5
    for a, b in zip(got, ref):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("m", winograd_nhwc.TILES)
def test_compiled_transforms_equal_numpy_transforms(m, rng):
    """Each compiled pass against its NumPy twin on the same buffers (float32 and float64)."""
    if not numba_enabled():
        pytest.skip("numba is not installed (pip install 'atrous[fast]') or is disabled")
    n, C, O, TH, TW = 3, 5, 6, 3, 4
    a = m + 2
    for dtype in (np.float32, np.float64):
        K = winograd_nhwc._constants(dtype)
        xpad = rng.standard_normal((n, m * TH + 2, m * TW + 2, C)).astype(dtype)
        gpad = rng.standard_normal((n, m * TH, m * TW, O)).astype(dtype)
        M = rng.standard_normal((a * a, n * TH * TW * O + 16)).astype(dtype)
        cases = (
            (winograd_nhwc._input_transform_nb, winograd_nhwc._input_transform_np, xpad, lambda: np.zeros((a * a, n * TH * TW * C + 16), dtype)),
            (winograd_nhwc._grad_transform_nb, winograd_nhwc._grad_transform_np, gpad, lambda: np.zeros((a * a, n * TH * TW * O + 16), dtype)),
            (winograd_nhwc._output_transform_nb, winograd_nhwc._output_transform_np, M, lambda: np.zeros((n, m * TH - 1, m * TW - 2, O), dtype)),
        )
        for kernel, reference, src, new in cases:
            got, ref = new(), new()
            kernel(src, m, TH, TW, got, K)
            reference(src, m, TH, TW, ref)
            tol = 1e-5 if dtype == np.float32 else 1e-13
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=kernel.__name__)


@pytest.mark.parametrize("m", winograd_nhwc.TILES)
def test_output_is_channels_last_and_any_input_layout_works(m, rng):
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    y = winograd_nhwc.forward(x, w, (1, 1), pad, m=m)
    assert channels_last_order(y) == (0, 2, 3, 1)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    x_odd = np.asfortranarray(x)
    for other in (x_cl, x_odd):
        np.testing.assert_array_equal(winograd_nhwc.forward(other, w, (1, 1), pad, m=m), y)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gw = winograd_nhwc.weight_grad(x, gy, (3, 3), (1, 1), pad, m=m)
    gy_cl = np.ascontiguousarray(gy.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(winograd_nhwc.weight_grad(x_cl, gy_cl, (3, 3), (1, 1), pad, m=m), gw)


@pytest.mark.parametrize("m", winograd_nhwc.TILES)
def test_chunked_equals_unchunked(m, rng, monkeypatch):
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((5, 4, 9, 8)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    y, _, gw = _ops(x, w, gy, pad, m)
    monkeypatch.setattr(atrous.config, "workspace_bytes", 1)  # one image per chunk
    y1, _, gw1 = _ops(x, w, gy, pad, m)
    np.testing.assert_array_equal(y1, y)  # each image's tiles are computed alike in any chunk
    np.testing.assert_allclose(gw1, gw, rtol=1e-5, atol=1e-5 * np.abs(gw).max())  # summed per chunk


def test_supports_only_3x3_stride1():
    ok = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert winograd_nhwc.supports((2, 3, 8, 8), (4, 3, 3, 3), *ok)
    assert not winograd_nhwc.supports((2, 3, 8, 8), (4, 3, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1)
    assert not winograd_nhwc.supports((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 1)
    assert not winograd_nhwc.supports((2, 3, 8, 8), (3, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 3)
    assert not winograd_nhwc.supports((2, 3, 8, 8), (4, 3, 5, 5), *ok)

# conv2d forced onto these algorithms against PyTorch, and float64 finite differences through
# them: test_winograd.py, whose TILES name them too.
