"""The algorithm choice behind conv2d: every algorithm equals the GEMM path (and a float64
reference) on the same configurations, forcing through ``atrous.config.conv_algorithm``
applies and restores, unsupported shapes fall back to GEMM, and the autotune cache."""
import numpy as np
import pytest

import atrous
import atrous.functional as F
from atrous import Tensor
from atrous.kernels import algorithms, conv_gemm
from atrous.kernels._numba import enabled as numba_enabled
from atrous.kernels._numba import use_numba_disabled
from atrous.kernels.algorithms import use_algorithm

# (N, C, H, W), (O, C/G, KH, KW), stride, padding ((t, b), (l, r)), dilation, groups
CONFIGS = [
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((3, 2, 9, 5), (3, 2, 3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((2, 3, 8, 8), (2, 3, 3, 3), (1, 1), ((2, 0), (0, 1)), (1, 1), 1),
    ((2, 4, 7, 7), (4, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 4),  # depthwise
    ((2, 3, 9, 8), (6, 1, 3, 3), (2, 1), ((1, 0), (1, 1)), (1, 2), 3),  # multiplier 2, strided, dilated
    ((2, 4, 7, 7), (4, 2, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2),  # grouped: GEMM only
    ((2, 3, 7, 7), (4, 3, 5, 5), (2, 2), ((2, 2), (2, 2)), (1, 1), 1),  # 5x5 strided: GEMM only
    ((2, 4, 8, 6), (5, 4, 3, 3), (1, 1), ((2, 2), (2, 0)), (2, 2), 1),  # dilated, splits into phases
    ((2, 4, 9, 6), (4, 2, 3, 2), (1, 1), ((3, 0), (2, 2)), (3, 2), 2),  # grouped, dilated, phases
]


@pytest.fixture(autouse=True)
def _clean_config():
    old = (atrous.config.conv_algorithm, atrous.config.conv_autotune)
    algorithms.clear_autotune_cache()
    yield
    atrous.config.conv_algorithm, atrous.config.conv_autotune = old
    algorithms.clear_autotune_cache()


def _run_all(x, w, gy, stride, padding, dilation, groups, name):
    alg = algorithms.ALGORITHMS[name]
    hw, k = x.shape[2:], w.shape[2:]
    return (
        alg.forward(x, w, stride, padding, dilation, groups),
        alg.input_grad(gy, w, hw, stride, padding, dilation, groups),
        alg.weight_grad(x, gy, k, stride, padding, dilation, groups),
    )


def _loop_conv(x, w, stride, padding, dilation, groups):
    """float64 reference: y[n, o] = sum over the group's channels and taps, written with slices."""
    (t, b), (l, r) = padding
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    N, C = x.shape[:2]
    O, Cg, KH, KW = w.shape
    (SH, SW), (DH, DW) = stride, dilation
    OH = (xp.shape[2] - DH * (KH - 1) - 1) // SH + 1
    OW = (xp.shape[3] - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, O, OH, OW))
    for o in range(O):
        g = o // (O // groups)
        for c in range(Cg):
            for kh in range(KH):
                for kw in range(KW):
                    win = xp[:, g * Cg + c, kh * DH : kh * DH + SH * (OH - 1) + 1 : SH, kw * DW : kw * DW + SW * (OW - 1) + 1 : SW]
                    y[:, o] += w[o, c, kh, kw] * win
    return y


def _meant_for(name, cfg):
    """Whether algorithm ``name`` is meant to run configuration ``cfg`` (by geometry alone)."""
    x_shape, w_shape, stride, padding, dilation, groups = cfg
    if name == "direct_depthwise":
        return groups > 1 and groups == x_shape[1] and w_shape[1] == 1
    if name == "gemm_nhwc":
        return groups == 1
    if name == "mec":
        return groups == 1 and dilation[0] == 1
    if name == "fft":
        return groups == 1 and stride == (1, 1) and w_shape[2:] != (1, 1)
    if name == "space_to_batch":
        return stride == (1, 1) and dilation != (1, 1) and all(
            n % d == 0 and lo % d == 0 and hi % d == 0 for n, d, (lo, hi) in zip(x_shape[2:], dilation, padding))
    return w_shape[2:] == (3, 3) and stride == (1, 1) and dilation == (1, 1) and groups == 1


PAIRS = [(c, n) for n in algorithms.ALGORITHMS if n != "gemm" for c in CONFIGS if _meant_for(n, c)]


def test_applies_agrees_with_geometry():
    for name, alg in algorithms.ALGORITHMS.items():
        for cfg in CONFIGS:
            if name == "gemm":
                assert alg.applies(*cfg)
            elif name != "direct_depthwise" or algorithms._depthwise() is not None:
                assert alg.applies(*cfg) == _meant_for(name, cfg), (name, cfg)


@pytest.mark.parametrize("cfg,name", PAIRS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_algorithm_equals_gemm_path(cfg, name, dtype, rng):
    x_shape, w_shape, stride, padding, dilation, groups = cfg
    if not algorithms.ALGORITHMS[name].applies(*cfg):
        pytest.skip(f"{name}: its kernel module (atrous.kernels.depthwise) is not available")
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    y_ref = _loop_conv(x.astype(np.float64), w.astype(np.float64), stride, padding, dilation, groups)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    got = _run_all(x, w, gy, stride, padding, dilation, groups, name)
    ref = _run_all(x, w, gy, stride, padding, dilation, groups, "gemm")
    rel = (3e-5 if name in ("winograd_f4", "winograd_nhwc") else 5e-6) if dtype == np.float32 else 1e-12
    for a, b in zip(got, ref):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=rel * np.abs(b).max())
    np.testing.assert_allclose(got[0], y_ref, rtol=0, atol=rel * np.abs(y_ref).max())


def _count_calls(monkeypatch):
    """Wrap every algorithm's three ops to record (name, op) per call."""
    calls = []
    for name, alg in algorithms.ALGORITHMS.items():
        for op in algorithms.OPS:
            fn = getattr(alg, op)

            def wrapped(*args, _fn=fn, _tag=(name, op)):
                calls.append(_tag)
                return _fn(*args)

            monkeypatch.setattr(alg, op, wrapped)
    return calls


def _train_call(x, w, **kw):
    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    y = F.conv2d(X, W, **kw)
    y.backward(np.ones(y.shape, y.dtype))
    return y.data, X.grad, W.grad


def test_forcing_runs_that_algorithm_and_restores(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    calls = _count_calls(monkeypatch)
    with use_algorithm("winograd_f4"):
        assert atrous.config.conv_algorithm == "winograd_f4"
        _train_call(x, w, padding=1)
    assert atrous.config.conv_algorithm == "auto"
    assert calls == [("winograd_f4", "forward"), ("winograd_f4", "input_grad"), ("winograd_f4", "weight_grad")]
    calls.clear()
    atrous.config.conv_algorithm = "gemm"
    _train_call(x, w, padding=1)
    assert {c[0] for c in calls} == {"gemm"}
    with pytest.raises(RuntimeError):
        with use_algorithm("winograd"):
            raise RuntimeError("boom")
    assert atrous.config.conv_algorithm == "gemm"  # restored after an exception too


def test_forced_algorithm_falls_back_to_gemm_where_it_does_not_apply(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    calls = _count_calls(monkeypatch)
    with use_algorithm("winograd"):
        y = F.conv2d(x, w, stride=2, padding=1)
    assert calls == [("gemm", "forward")]
    np.testing.assert_array_equal(y.data, conv_gemm.forward(x, w, (2, 2), ((1, 1), (1, 1)), algorithm="gemm"))


def test_unknown_algorithm_is_a_clear_error(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    atrous.config.conv_algorithm = "fft9"
    with pytest.raises(ValueError, match="conv_algorithm must be one of .*'winograd'.*got 'fft9'"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match="use_algorithm"):
        with use_algorithm("nope"):
            pass


def test_autotune_times_once_per_shape_then_hits_the_cache(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    atrous.config.conv_autotune = True
    timed = []
    real = algorithms._autotune
    monkeypatch.setattr(algorithms, "_autotune", lambda op, key, cands, args: timed.append((op, tuple(cands))) or real(op, key, cands, args))
    ref = _train_call(x, w, padding=1)
    assert sorted(op for op, _ in timed) == sorted(algorithms.OPS)
    three_by_three = ("gemm", "gemm_nhwc", "mec", "winograd", "winograd_f4", "winograd_nhwc", "winograd_nhwc_f2", "fft")
    assert all(c == three_by_three for _, c in timed)
    cache = algorithms.autotune_cache()
    assert len(cache) == 3 and set(cache.values()) <= set(three_by_three)
    key = ("forward", (2, 3, 6, 6), (4, 3, 3, 3), "float32", (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert key in cache
    timed.clear()
    calls = _count_calls(monkeypatch)
    again = _train_call(x, w, padding=1)  # cache hits: no timing, one run per op by the cached choice
    assert timed == []
    assert calls == [(cache[(op,) + key[1:]], op) for op in algorithms.OPS]
    for a, b in zip(again, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    # another shape, dtype or padding is another entry
    _train_call(x.astype(np.float64), w.astype(np.float64), padding=1)
    F.conv2d(x, w, padding=0)
    assert len(algorithms.autotune_cache()) == 7
    # a grouped convolution has one candidate: cached without timing
    timed.clear()
    F.conv2d(rng.standard_normal((2, 4, 6, 6)).astype(np.float32), rng.standard_normal((4, 2, 3, 3)).astype(np.float32), groups=2)
    assert timed == [] and "gemm" in algorithms.autotune_cache().values()
    algorithms.clear_autotune_cache()
    assert algorithms.autotune_cache() == {}


def test_forcing_wins_over_autotune(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    atrous.config.conv_autotune = True
    atrous.config.conv_algorithm = "winograd"
    calls = _count_calls(monkeypatch)
    F.conv2d(x, w, padding=1)
    assert calls == [("winograd", "forward")] and algorithms.autotune_cache() == {}


def test_heuristic_choices():
    h = algorithms.heuristic
    assert h("forward", (8, 64, 56, 56), (128, 64, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1) == "gemm"
    assert h("forward", (8, 64, 16, 16), (64, 64, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1) == "gemm_nhwc"
    assert h("forward", (8, 64, 56, 56), (64, 64, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1) == "gemm"
    assert h("forward", (8, 64, 56, 56), (64, 64, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1) == "gemm"
    assert h("forward", (8, 64, 56, 56), (64, 32, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2) == "gemm"
    dw = "direct_depthwise" if algorithms.ALGORITHMS["direct_depthwise"].applies(
        (8, 128, 56, 56), (128, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 128) else "gemm"
    assert h("forward", (8, 128, 56, 56), (128, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 128) == dw
    same3 = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    for op in algorithms.OPS:
        # channels-last Winograd from 64 channels, with its compiled transforms: F(4x4) up to 128
        # channels, F(2x2) from 256; else a GEMM (or MEC for few channels)
        f4, f2 = ("winograd_nhwc", "winograd_nhwc_f2") if numba_enabled() else ("gemm", "gemm")
        assert h(op, (8, 64, 56, 56), (64, 64, 3, 3), *same3) == f4
        assert h(op, (8, 128, 28, 28), (128, 128, 3, 3), *same3) == f4
        assert h(op, (32, 64, 8, 8), (64, 64, 3, 3), *same3) == (f4 if numba_enabled() else "gemm_nhwc")
        assert h(op, (8, 256, 14, 14), (256, 256, 3, 3), *same3) == f2
        assert h(op, (8, 512, 7, 7), (512, 512, 3, 3), *same3) == (f2 if numba_enabled() else "gemm_nhwc")
        assert h(op, (64, 16, 32, 32), (16, 16, 3, 3), *same3) == "mec"
        # dilated: its phases through Winograd where they split evenly, else a GEMM
        dil = ((2, 2), (2, 2)), (2, 2), 1
        assert h(op, (8, 64, 56, 56), (64, 64, 3, 3), (1, 1), *dil) == ("space_to_batch" if numba_enabled() else "gemm")
        assert h(op, (8, 64, 55, 56), (64, 64, 3, 3), (1, 1), *dil) == "gemm"  # an odd height
        assert h(op, (8, 16, 56, 56), (16, 16, 3, 3), (1, 1), *dil) == "gemm"  # too few channels
        with use_numba_disabled():
            assert not h(op, (8, 256, 14, 14), (256, 256, 3, 3), *same3).startswith("winograd")
        assert h(op, (8, 64, 56, 56), (64, 64, 7, 7), (1, 1), ((3, 3), (3, 3)), (1, 1), 1) == "fft"
        assert h(op, (8, 3, 224, 224), (64, 3, 7, 7), (1, 1), ((3, 3), (3, 3)), (1, 1), 1) != "fft"  # 3 channels
        assert h(op, (8, 64, 56, 56), (64, 64, 7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1), 1) != "fft"  # strided


def test_names():
    assert algorithms.names()[0] == "auto"
    assert {"gemm", "gemm_nhwc", "mec", "winograd", "winograd_f4", "winograd_nhwc", "winograd_nhwc_f2",
            "direct_depthwise", "fft"} <= set(algorithms.names())


BIAS_CONFIGS = CONFIGS + [
    ((3, 4, 5, 5), (6, 4, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # pointwise: the direct GEMM
    ((2, 3, 40, 40), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),  # 1600 columns: blocks of 1 image
]


@pytest.mark.parametrize("cfg", BIAS_CONFIGS)
def test_bias_is_added_in_the_forward_exactly_as_afterwards(cfg, rng, monkeypatch):
    """run(..., bias=b) equals run(...) + b bitwise for every algorithm (the fusing ones add it
    while writing y, the others afterwards): the same float additions, also when chunked."""
    x_shape, w_shape, stride, padding, dilation, groups = cfg
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    for name, alg in algorithms.ALGORITHMS.items():
        if not alg.applies(*cfg):
            continue
        with use_algorithm(name):
            y = algorithms.run("forward", x, w, None, stride, padding, dilation, groups)
            yb = algorithms.run("forward", x, w, None, stride, padding, dilation, groups, bias=b)
            np.testing.assert_array_equal(yb, y + b.reshape(1, -1, 1, 1), err_msg=name)
            with monkeypatch.context() as m:
                m.setattr(atrous.config, "workspace_bytes", 1)  # one block per chunk
                small = algorithms.run("forward", x, w, None, stride, padding, dilation, groups, bias=b)
            if name in ("gemm", "gemm_nhwc", "mec", "direct_depthwise"):  # chunking changes no sum
                np.testing.assert_array_equal(small, yb, err_msg=name)
            else:  # FFT picks smaller tiles under a small workspace: other rounding
                np.testing.assert_allclose(small, yb, rtol=0, atol=1e-5 * np.abs(yb).max(), err_msg=name)
    assert algorithms.ALGORITHMS["direct_depthwise"].fuses_bias and not algorithms.ALGORITHMS["gemm"].fuses_bias
