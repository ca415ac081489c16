"""Memory-efficient convolution (``kernels.mec``): its strided row views against plain-loop
columns, its three operations against a loop convolution (float64), the NCHW GEMM engine and
PyTorch on random geometries (stride, horizontal dilation, asymmetric and negative padding),
and chunking (bitwise); its empty batch and float64 finite differences through conv2d are in
tests/test_conv_nhwc.py, with the other channels-last engine."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
from atrous.kernels import algorithms, mec
from atrous.kernels.algorithms import use_algorithm
from test_conv_nhwc import _draw, check_forced_algorithm_against_torch, check_ops_against_loop_and_gemm, loop_im2col

# as test_conv_nhwc's geometry, with vertical dilation 1 (what MEC's row views need)
geometry = st.tuples(
    st.integers(1, 3),  # N
    st.integers(1, 5),  # C
    st.integers(1, 4),  # O
    st.integers(1, 4), st.integers(1, 4),  # KH, KW
    st.integers(1, 3), st.integers(1, 3),  # stride
    st.just(1), st.integers(1, 2),  # dilation
    st.tuples(*[st.integers(-1, 3)] * 4),  # padding t, b, l, r (negative crops)
    st.integers(0, 5), st.integers(0, 5),  # extra H, W beyond the dilated kernel
)


@settings(max_examples=60, deadline=None)
@given(geometry, st.integers(0, 2**31 - 1))
def test_row_views_and_ops_equal_loop_and_gemm_engine(g, seed):
    rng = np.random.default_rng(seed)
    drawn = _draw(g, rng, np.float64)
    if drawn is None:
        return
    x, w, stride, padding, dilation = drawn
    kernel = w.shape[2:]
    cols = loop_im2col(x, kernel, stride, padding, dilation)  # row (n, oh, ow)
    (_, _, rows), = mec._lowered_chunks(x, kernel, stride, padding, dilation, chunk=x.shape[0])
    OH = rows.shape[0]
    np.testing.assert_array_equal(rows.reshape(OH, x.shape[0], -1, rows.shape[2]).transpose(1, 0, 2, 3).reshape(cols.shape), cols)
    check_ops_against_loop_and_gemm(mec, x, w, stride, padding, dilation, rng)


@settings(max_examples=40, deadline=None)
@given(geometry, st.integers(0, 2**31 - 1))
def test_conv2d_forced_onto_mec_equals_torch(torch, g, seed):
    check_forced_algorithm_against_torch(torch, "mec", g, seed)


@pytest.mark.parametrize("stride", [(1, 1), (2, 1)])
def test_chunked_equals_whole_bitwise(rng, monkeypatch, stride):
    x = rng.standard_normal((7, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    whole = mec.forward(x, w, stride, pad)
    gy = rng.standard_normal(whole.shape).astype(np.float32)
    gw_whole = mec.weight_grad(x, gy, (3, 3), stride, pad)
    gx_whole = mec.input_grad(gy, w, (9, 8), stride, pad)
    OH = whole.shape[2]
    assert mec._plan(x.shape, (3, 3), 5, (OH, 8), pad, 4) == (7, 7)  # one block, one chunk
    monkeypatch.setattr(atrous.config, "workspace_bytes", 1)  # one block (all 7 images) per chunk
    assert mec._plan(x.shape, (3, 3), 5, (OH, 8), pad, 4) == (7, 7)
    monkeypatch.setattr(mec, "GEMM_ROWS", 1)  # blocks, and so chunks, of one image
    assert mec._plan(x.shape, (3, 3), 5, (OH, 8), pad, 4) == (1, 1)
    np.testing.assert_array_equal(mec.forward(x, w, stride, pad), whole)
    np.testing.assert_array_equal(mec.input_grad(gy, w, (9, 8), stride, pad), gx_whole)
    monkeypatch.setattr(mec, "GEMM_ROWS", 1024)  # the same blocks as the whole run, chunk of one block
    np.testing.assert_array_equal(mec.weight_grad(x, gy, (3, 3), stride, pad), gw_whole)


def test_weight_grad_sums_the_same_blocks_whatever_the_chunk(rng, monkeypatch):
    x = rng.standard_normal((6, 4, 7, 7)).astype(np.float32)
    gy = rng.standard_normal((6, 3, 7, 7)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    monkeypatch.setattr(mec, "GEMM_ROWS", 14)  # blocks of 2 images (7 output columns each)
    whole = mec.weight_grad(x, gy, (3, 3), (1, 1), pad)
    monkeypatch.setattr(atrous.config, "workspace_bytes", 1)  # chunks of one block
    assert mec._plan(x.shape, (3, 3), 3, (7, 7), pad, 4) == (2, 2)
    np.testing.assert_array_equal(mec.weight_grad(x, gy, (3, 3), (1, 1), pad), whole)


def test_vertical_dilation_is_not_forced_onto_it(rng):
    geometry = ((2, 3, 9, 9), (4, 3, 3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 1)
    assert not algorithms.ALGORITHMS["mec"].applies(*geometry)
    with use_algorithm("mec"):
        assert algorithms.select("forward", *geometry[:2], np.float32, *geometry[2:]) == "gemm"


def test_heuristic_sends_cifar_sized_layers_here():
    h = algorithms.heuristic
    pad = ((1, 1), (1, 1))
    for op in algorithms.OPS:
        assert h(op, (32, 16, 32, 32), (16, 16, 3, 3), (1, 1), pad, (1, 1), 1) == "mec"
        assert h(op, (32, 32, 16, 16), (32, 32, 3, 3), (1, 1), pad, (1, 1), 1) == "mec"
        assert h(op, (32, 16, 32, 32), (32, 16, 3, 3), (2, 2), pad, (1, 1), 1) == "mec"
        assert h(op, (32, 64, 8, 8), (64, 64, 3, 3), (2, 2), pad, (1, 1), 1) == "gemm_nhwc"  # 64 channels
        assert h(op, (8, 16, 112, 112), (16, 16, 3, 3), (1, 1), pad, (1, 1), 1) == "gemm"  # wide images
        assert h(op, (8, 16, 32, 32), (16, 16, 3, 3), (1, 1), pad, (2, 2), 1) != "mec"  # dilated rows
        assert h(op, (32, 16, 32, 32), (16, 16, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1) == "gemm"
    # the RGB input layer copies runs of 3*3 values; its input gradient copies 16 channels
    assert h("forward", (32, 3, 32, 32), (16, 3, 3, 3), (1, 1), pad, (1, 1), 1) == "gemm"
    assert h("input_grad", (32, 3, 32, 32), (16, 3, 3, 3), (1, 1), pad, (1, 1), 1) == "mec"
