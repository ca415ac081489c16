"""FFT convolution (``atrous.kernels.fft``): forward and both gradients against a float64 loop
reference written here, against the GEMM engine on random configurations (kernels 1..11, odd
and even, dilation, groups, asymmetric and negative padding, float32 and float64), through
conv2d / conv_transpose2d and autograd against PyTorch, float64 finite differences, chunking,
the tile plan and fast lengths, and the error on strided geometry."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from atrous.kernels import algorithms, conv_gemm, fft
from atrous.kernels.algorithms import use_algorithm
from gradcheck import check_gradients


# ----- independent references -----------------------------------------------------------------
def _canvas(x, padding):
    """x zero-padded (negative padding crops) and the canvas offset of padded pixel (0, 0)."""
    (t, b), (l, r) = padding
    N, C, H, W = x.shape
    T, L = max(t, 0), max(l, 0)
    canvas = np.zeros((N, C, H + T + max(b, 0), W + L + max(r, 0)))
    canvas[:, :, T : T + H, L : L + W] = x
    return canvas, (T - t, L - l)


def loop_conv_and_grads(x, w, gy_seed, padding, dilation, groups):
    """(y, gx, gw, gy) of a stride-1 convolution, written tap by tap in float64: y[n, o, i, j] =
    sum_{c in o's group, kh, kw} w[o, c, kh, kw] a[n, c, i + kh*DH, j + kw*DW]."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    DH, DW = dilation
    Og = O // groups
    canvas, (h0, w0) = _canvas(x, padding)
    (t, b), (l, r) = padding
    OH, OW = H + t + b - DH * (KH - 1), W + l + r - DW * (KW - 1)
    y = np.zeros((N, O, OH, OW))
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape)
    gcanvas = np.zeros_like(canvas)
    gw = np.zeros(w.shape)
    for g in range(groups):
        xs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * Og, (g + 1) * Og)
        for kh in range(KH):
            for kw in range(KW):
                rows = slice(h0 + kh * DH, h0 + kh * DH + OH)
                cols = slice(w0 + kw * DW, w0 + kw * DW + OW)
                win = canvas[:, xs, rows, cols]
                y[:, os_] += np.einsum("nchw,oc->nohw", win, w[os_, :, kh, kw])
                gw[os_, :, kh, kw] = np.einsum("nohw,nchw->oc", gy[:, os_], win)
                gcanvas[:, xs, rows, cols] += np.einsum("nohw,oc->nchw", gy[:, os_], w[os_, :, kh, kw])
    T, L = max(t, 0), max(l, 0)
    return y, gcanvas[:, :, T : T + H, L : L + W], gw, gy


def _fft_all(x, w, gy, padding, dilation, groups):
    hw, k = x.shape[2:], w.shape[2:]
    return (
        fft.forward(x, w, (1, 1), padding, dilation, groups),
        fft.input_grad(gy, w, hw, (1, 1), padding, dilation, groups),
        fft.weight_grad(x, gy, k, (1, 1), padding, dilation, groups),
    )


def _gemm_all(x, w, gy, padding, dilation, groups):
    hw, k = x.shape[2:], w.shape[2:]
    args = ((1, 1), padding, dilation, groups)
    return (
        conv_gemm.forward(x, w, *args, algorithm="gemm"),
        conv_gemm.input_grad(gy, w, hw, *args, algorithm="gemm"),
        conv_gemm.weight_grad(x, gy, k, *args, algorithm="gemm"),
    )


def _close(got, ref, rel):
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=rel * max(np.abs(ref).max(), 1e-30))


# (N, C, H, W), (O, C/G, KH, KW), padding, dilation, groups
CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), ((1, 1), (1, 1)), (1, 1), 1),
    ((3, 2, 12, 9), (3, 2, 4, 2), ((0, 3), (2, 0)), (1, 1), 1),  # even kernels, asymmetric padding
    ((2, 3, 9, 11), (2, 3, 5, 5), ((-1, 2), (3, -2)), (1, 1), 1),  # crops
    ((2, 4, 13, 10), (6, 2, 3, 4), ((2, 1), (1, 2)), (2, 3), 2),  # dilated, grouped
    ((2, 2, 20, 18), (3, 2, 11, 9), ((5, 5), (4, 4)), (1, 1), 1),  # large kernel
    ((3, 2, 6, 5), (2, 2, 1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # 1x1
    ((2, 1, 5, 5), (1, 1, 5, 5), ((0, 0), (0, 0)), (1, 1), 1),  # one output pixel
]


@pytest.mark.parametrize("x_shape,w_shape,padding,dilation,groups", CASES)
def test_matches_loop_reference_float64(x_shape, w_shape, padding, dilation, groups, rng):
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    ref = loop_conv_and_grads(x, w, 1, padding, dilation, groups)
    got = _fft_all(x, w, ref[3], padding, dilation, groups)
    for a, b in zip(got, ref[:3]):
        assert a.dtype == np.float64
        _close(a, b, 1e-10)


def test_tiled_plan_matches_reference(rng, monkeypatch):
    """A large output forced into many small tiles (overlap-save) still gives the same result."""
    x, w = rng.standard_normal((2, 3, 40, 33)), rng.standard_normal((4, 3, 5, 3))
    padding = ((2, 2), (1, 1))
    ref = loop_conv_and_grads(x, w, 2, padding, (1, 1), 1)
    monkeypatch.setattr(fft, "_plan", lambda *a: fft.Plan((((8, 6), (4, 4), (10, 9), 1))))
    for a, b in zip(_fft_all(x, w, ref[3], padding, (1, 1), 1), ref[:3]):
        _close(a, b, 1e-10)


@settings(max_examples=40)
@given(
    n=st.integers(2, 3), cg=st.integers(1, 4), og=st.integers(1, 4), groups=st.sampled_from([1, 1, 2]),
    kh=st.integers(1, 11), kw=st.integers(1, 11), dh=st.integers(1, 2), dw=st.integers(1, 2),
    pads=st.lists(st.integers(-2, 6), min_size=4, max_size=4), extra=st.tuples(st.integers(0, 9), st.integers(0, 9)),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31),
)
def test_equals_gemm_engine(n, cg, og, groups, kh, kw, dh, dw, pads, extra, dtype, seed):
    rng = np.random.default_rng(seed)
    t, b, l, r = pads
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    # input large enough that every crop leaves at least one output
    H, W = eh + max(0, -t) + max(0, -b) + extra[0], ew + max(0, -l) + max(0, -r) + extra[1]
    padding = ((t, b), (l, r))
    x = rng.standard_normal((n, cg * groups, H, W)).astype(dtype)
    w = rng.standard_normal((og * groups, cg, kh, kw)).astype(dtype)
    OH, OW = H + t + b - eh + 1, W + l + r - ew + 1
    gy = rng.standard_normal((n, og * groups, OH, OW)).astype(dtype)
    got = _fft_all(x, w, gy, padding, (dh, dw), groups)
    ref = _gemm_all(x, w, gy, padding, (dh, dw), groups)
    for a, b_ in zip(got, ref):
        assert a.dtype == dtype
        _close(a, b_, 1e-10 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_equals_unchunked(dtype, rng, monkeypatch):
    x = rng.standard_normal((5, 3, 12, 10)).astype(dtype)
    w = rng.standard_normal((4, 3, 5, 3)).astype(dtype)
    gy = rng.standard_normal((5, 4, 10, 10)).astype(dtype)
    pad = ((1, 1), (1, 1))
    whole = _fft_all(x, w, gy, pad, (1, 1), 1)
    monkeypatch.setattr(atrous.config, "workspace_bytes", 1)  # one image per chunk
    assert fft.plan((10, 10), (5, 3), 5, 3, 4, 1, x.dtype.itemsize).chunk == 1
    for a, b in zip(_fft_all(x, w, gy, pad, (1, 1), 1), whole):
        _close(a, b, 1e-12 if dtype == np.float64 else 1e-6)


def test_non_contiguous_and_empty_inputs(rng):
    x = rng.standard_normal((2, 3, 9, 8)).transpose(0, 1, 3, 2)  # (2, 3, 8, 9), strided
    w = rng.standard_normal((4, 3, 3, 2))[:, :, ::-1]  # negative strides
    ref = loop_conv_and_grads(np.ascontiguousarray(x), np.ascontiguousarray(w), 3, ((1, 1), (0, 1)), (1, 1), 1)
    for a, b in zip(_fft_all(x, w, ref[3], ((1, 1), (0, 1)), (1, 1), 1), ref[:3]):
        _close(a, b, 1e-10)
    e = np.zeros((0, 3, 8, 9))
    assert fft.forward(e, w, padding=((1, 1), (0, 1))).shape == (0, 4, 8, 9)
    gw = fft.weight_grad(e, np.zeros((0, 4, 8, 9)), (3, 2), padding=((1, 1), (0, 1)))
    assert gw.shape == (4, 3, 3, 2) and not gw.any()


# ----- geometry, plan and errors --------------------------------------------------------------
def test_stride_is_rejected_with_a_clear_error(rng):
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"fft.forward: FFT convolution needs stride \(1, 1\), got stride=\(2, 1\)"):
        fft.forward(x, w, (2, 1))
    with pytest.raises(ValueError, match=r"fft.input_grad: .*stride=\(2, 2\)"):
        fft.input_grad(rng.standard_normal((1, 3, 3, 3)), w, (8, 8), (2, 2))
    with pytest.raises(ValueError, match=r"fft.weight_grad: .*stride=\(1, 3\)"):
        fft.weight_grad(x, rng.standard_normal((1, 3, 6, 2)), (3, 3), (1, 3))
    assert fft.supports((1, 2, 8, 8), (3, 2, 3, 3), (1, 1), ((0, 0), (0, 0)), (2, 2), 1)
    assert not fft.supports((1, 2, 8, 8), (3, 2, 3, 3), (2, 2), ((0, 0), (0, 0)), (1, 1), 1)


def _smooth(n):
    while n % 2 == 0:
        n //= 2
    for p in (3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def test_fast_lengths_are_the_smallest_5_smooth():
    for n in range(1, 500):
        want = next(m for m in range(n, 2 * n + 2) if _smooth(m))
        assert fft.smooth_length(n) == want, n
        assert fft.fast_length(n) >= n and _smooth(fft.fast_length(n))


@settings(max_examples=60)
@given(oh=st.integers(1, 300), ow=st.integers(1, 300), eh=st.integers(1, 31), ew=st.integers(1, 31),
       n=st.integers(1, 16), c=st.sampled_from([1, 3, 64, 512]), o=st.sampled_from([1, 16, 256]))
def test_plan_tiles_cover_the_output(oh, ow, eh, ew, n, c, o):
    p = fft.plan((oh, ow), (eh, ew), n, c, o, 1, 4)
    for i, (out, e) in enumerate(zip((oh, ow), (eh, ew))):
        L, T, tiles = p.L[i], p.T[i], p.tiles[i]
        assert _smooth(L) and 1 <= T <= L - e + 1 and tiles * T >= out > (tiles - 1) * T
    assert 1 <= p.chunk <= n


# ----- through the public ops: PyTorch and finite differences ----------------------------------
@pytest.fixture
def fft_algorithm(monkeypatch):
    """The registered 'fft' algorithm, with a call counter."""
    alg = algorithms.ALGORITHMS["fft"]
    calls = []
    for op in algorithms.OPS:
        fn = getattr(alg, op)
        monkeypatch.setattr(alg, op, lambda *a, _fn=fn, _op=op: calls.append(_op) or _fn(*a))
    return calls


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])  # calls cleared per example
@given(
    n=st.integers(2, 3), c=st.integers(1, 4), o=st.integers(1, 4), k=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    p=st.tuples(st.integers(0, 4), st.integers(0, 4)), d=st.integers(1, 2), extra=st.integers(0, 8),
    transposed_input=st.booleans(), seed=st.integers(0, 2**31),
)
def test_conv2d_forced_fft_vs_torch(torch, fft_algorithm, n, c, o, k, p, d, extra, transposed_input, seed):
    rng = np.random.default_rng(seed)
    h, w_ = d * (k[0] - 1) + 1 + extra, d * (k[1] - 1) + 1 + extra // 2
    if transposed_input:
        x = rng.standard_normal((n, c, w_, h)).astype(np.float32).transpose(0, 1, 3, 2)
    else:
        x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    wt = rng.standard_normal((o, c) + k).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    X, W, B = (Tensor(np.array(a), requires_grad=True) for a in (x, wt, b))
    fft_algorithm.clear()
    with use_algorithm("fft"):
        y = F.conv2d(X, W, B, padding=p, dilation=d)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(gy)
    assert fft_algorithm == ["forward", "input_grad", "weight_grad"]
    tx, tw, tb = (torch.tensor(np.array(a), requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=p, dilation=d)
    ty.backward(torch.from_numpy(gy))
    for got, ref in ((y.data, ty), (X.grad, tx.grad), (W.grad, tw.grad), (B.grad, tb.grad)):
        ref = ref.detach().numpy()
        assert got.dtype == np.float32
        _close(got, ref, 1e-4)


def test_conv_transpose2d_forced_fft_vs_torch(torch, fft_algorithm, rng):
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 4)).astype(np.float32)
    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    with use_algorithm("fft"):
        y = F.conv_transpose2d(X, W, padding=(2, 1), output_padding=0)
        y.backward(np.ones(y.shape, np.float32))
    assert set(fft_algorithm) == {"forward", "input_grad", "weight_grad"}
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, padding=(2, 1))
    ty.backward(torch.ones_like(ty))
    for got, ref in ((y.data, ty), (X.grad, tx.grad), (W.grad, tw.grad)):
        _close(got, ref.detach().numpy(), 1e-4)


@pytest.mark.parametrize("kw", [dict(padding=2), dict(padding="same", dilation=2), dict(padding=(0, 3), dilation=(2, 1))])
def test_finite_differences_through_fft(fft_algorithm, kw, rng):
    x = rng.standard_normal((2, 2, 7, 6))
    w = rng.standard_normal((4, 2, 4, 3))
    b = rng.standard_normal(4)
    with use_algorithm("fft"):
        check_gradients(lambda X, W, B: F.conv2d(X, W, B, **kw), x, w, b)
    assert "input_grad" in fft_algorithm and "weight_grad" in fft_algorithm
