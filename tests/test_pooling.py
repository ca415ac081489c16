"""Pooling: plain-loop references, PyTorch on random configurations, finite differences, errors."""
import math

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients


# ----- plain-loop references (independent of the library's shape code) ---------------------
def ref_out_size(n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else math.floor(span / s)) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window may not start in the right pad
        out -= 1
    return out


def ref_max_pool2d(x, k, s, p, d, ceil_mode):
    """PyTorch's scan: row-major over in-bounds taps, ``v > best or isnan(v)``."""
    N, C, H, W = x.shape
    OH = ref_out_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = ref_out_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    out = np.empty((N, C, OH, OW), x.dtype)
    idx = np.empty((N, C, OH, OW), np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best, where = -np.inf, None
                    for kh in range(k[0]):
                        for kw in range(k[1]):
                            h, w = oh * s[0] - p[0] + kh * d[0], ow * s[1] - p[1] + kw * d[1]
                            if not (0 <= h < H and 0 <= w < W):
                                continue
                            v = x[n, c, h, w]
                            if where is None:
                                where = h * W + w
                            if v > best or np.isnan(v):
                                best, where = v, h * W + w
                    out[n, c, oh, ow], idx[n, c, oh, ow] = best, where
    return out, idx


def ref_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    OH = ref_out_size(H, k[0], s[0], p[0], 1, ceil_mode)
    OW = ref_out_size(W, k[1], s[1], p[1], 1, ceil_mode)
    out = np.zeros((N, C, OH, OW), x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
            padded = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            total = x[:, :, h0c:h1c, w0c:w1c].sum(axis=(2, 3))
            div = divisor_override or (padded if count_include_pad else (h1c - h0c) * (w1c - w0c))
            out[:, :, oh, ow] = total / div
    return out


def ref_bins(n, out):
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def ref_adaptive(x, out_hw, reduce):
    N, C, H, W = x.shape
    out = np.empty((N, C) + tuple(out_hw), x.dtype)
    for i, (h0, h1) in enumerate(ref_bins(H, out_hw[0])):
        for j, (w0, w1) in enumerate(ref_bins(W, out_hw[1])):
            out[:, :, i, j] = reduce(x[:, :, h0:h1, w0:w1], axis=(2, 3))
    return out


def scatter_ref(g, idx, x_shape):
    gx = np.zeros(x_shape, g.dtype)
    N, C, H, W = x_shape
    for n in range(N):
        for c in range(C):
            for i, j in np.ndindex(*g.shape[2:]):
                gx[n, c].flat[idx[n, c, i, j]] += g[n, c, i, j]
    return gx


def every_window_touches_input(n, k, s, p, d, out):
    return all(any(0 <= o * s - p + t * d < n for t in range(k)) for o in range(out))


# ----- random configurations --------------------------------------------------------------
@st.composite
def window_configs(draw, dilation=True):
    """Small pooling problems with border windows, ceil mode and N > 1."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    outs = [ref_out_size(n, *a, ceil_mode) for n, a in zip((H, W), zip(k, s, p, d))]
    assume(min(outs) >= 1)
    floor_plus = [math.ceil((n + 2 * pi - di * (ki - 1) - 1) / si) + 1
                  for n, ki, si, pi, di in zip((H, W), k, s, p, d)]
    if ceil_mode and outs != floor_plus:
        event("ceil mode dropped a last window that would start in the right padding")
    # PyTorch 2.13 reads/writes out of bounds for windows lying wholly in the padding.
    assume(all(every_window_touches_input(n, *a, o) for n, a, o in zip((H, W), zip(k, s, p, d), outs)))
    return dict(shape=(N, C, H, W), k=k, s=s, p=p, d=d, ceil_mode=ceil_mode)


@st.composite
def inputs(draw, shape, dtype=np.float32):
    """Integer-valued (many ties) or continuous values, contiguous or a strided view."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    ties = draw(st.booleans())
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced"]))
    N, C, H, W = shape
    if layout == "transposed":
        base = np.ascontiguousarray(np.swapaxes(np.empty(shape), 2, 3))
        x = np.swapaxes(base, 2, 3)
    elif layout == "sliced":
        x = np.empty((N, C, H, 2 * W))[..., ::2]
    else:
        x = np.empty(shape)
    x[...] = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)
    return x.astype(dtype, copy=False) if dtype != np.float64 else x


def _grad_out(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----- max_pool2d --------------------------------------------------------------------------
@settings(max_examples=120)
@given(cfg=window_configs(), data=st.data())
def test_max_pool2d_matches_torch(torch, cfg, data):
    x = data.draw(inputs(cfg["shape"]))
    kw = dict(kernel_size=cfg["k"], stride=cfg["s"], padding=cfg["p"], dilation=cfg["d"],
              ceil_mode=cfg["ceil_mode"], return_indices=True)
    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    out_t, idx_t = torch.nn.functional.max_pool2d(xt, **kw)
    g = _grad_out(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(g))

    xa = Tensor(x, requires_grad=True)
    out, idx = F.max_pool2d(xa, **kw)
    out.backward(g)
    np.testing.assert_array_equal(out.numpy(), out_t.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())
    assert idx.dtype == np.int64
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@settings(max_examples=40)
@given(cfg=window_configs(), data=st.data())
def test_max_pool2d_matches_loop_reference(cfg, data):
    x = data.draw(inputs(cfg["shape"], np.float64))
    k, s, p, d = cfg["k"], cfg["s"], cfg["p"], cfg["d"]
    out, idx = F.max_pool2d(x, k, s, p, d, ceil_mode=cfg["ceil_mode"], return_indices=True)
    ref, ref_idx = ref_max_pool2d(x, k, s, p, d, cfg["ceil_mode"])
    np.testing.assert_array_equal(out.numpy(), ref)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    # Backward: every output's gradient lands on its recorded maximum.
    xa = Tensor(x, requires_grad=True)
    y = F.max_pool2d(xa, k, s, p, d, ceil_mode=cfg["ceil_mode"])
    g = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_allclose(xa.grad, scatter_ref(g, ref_idx, x.shape), rtol=1e-12, atol=1e-12)


def test_max_pool2d_overlapping_windows_accumulate_on_shared_maximum():
    # AlexNet's 3x3 stride 2: the centre pixel (2, 2) is the maximum of all four windows.
    x = np.zeros((2, 1, 5, 5))
    x[:, 0, 2, 2] = 9.0
    xa = Tensor(x, requires_grad=True)
    F.max_pool2d(xa, 3, stride=2).backward(np.ones((2, 1, 2, 2)))
    expected = np.zeros_like(x)
    expected[:, 0, 2, 2] = 4.0
    np.testing.assert_array_equal(xa.grad, expected)


def test_max_pool2d_ties_pick_first_in_row_major_order():
    x = np.ones((1, 1, 2, 2), np.float32)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.numpy().item() == 0
    xa = Tensor(x, requires_grad=True)
    F.max_pool2d(xa, 2).sum().backward()
    np.testing.assert_array_equal(xa.grad, [[[[1, 0], [0, 0]]]])


def test_max_pool2d_nan_and_inf_follow_torch(torch):
    x = np.array([[[[1, np.nan, 3, np.nan], [np.nan, 2, -np.inf, -np.inf],
                    [-np.inf, -np.inf, 5, 5], [-np.inf, -np.inf, 0, 7]]]], np.float32)
    out, idx = F.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    out_t, idx_t = torch.nn.functional.max_pool2d(torch.tensor(x), 2, 1, 1, return_indices=True)
    np.testing.assert_array_equal(out.numpy(), out_t.numpy())
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())


def test_max_pool2d_window_wholly_in_padding():
    # PyTorch 2.13 gives -inf and index 6 here (H = W = 2, taps at -1 and 2), then corrupts
    # memory in backward; we keep its forward and send that window's gradient nowhere.
    x = Tensor(np.arange(4.0).reshape(1, 1, 2, 2), requires_grad=True)
    out, idx = F.max_pool2d(x, 2, stride=1, padding=1, dilation=3, return_indices=True)
    assert out.numpy().item() == -np.inf and idx.numpy().item() == 6
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((1, 1, 2, 2)))


def test_max_pool2d_unbatched_zero_batch_and_no_grad_paths(rng):
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    out, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    out4, idx4 = F.max_pool2d(x[None], 3, 2, 1, return_indices=True)
    assert out.shape == (3, 4, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), out4.numpy()[0])
    np.testing.assert_array_equal(idx.numpy(), idx4.numpy()[0])
    xa = Tensor(x, requires_grad=True)
    F.max_pool2d(xa, 3, 2, 1).sum().backward()
    assert xa.grad.shape == x.shape and xa.grad.sum() == 3 * 4 * 3
    with atrous.no_grad():
        out_ng, idx_ng = F.max_pool2d(xa, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx_ng.numpy(), idx.numpy())
    assert F.max_pool2d(np.zeros((0, 2, 4, 4)), 2).shape == (0, 2, 2, 2)


def test_max_pool2d_stride_defaults_to_kernel(torch, rng):
    x = rng.standard_normal((2, 2, 7, 9))
    for stride in (None, []):
        ref = torch.nn.functional.max_pool2d(torch.tensor(x), (2, 3), stride=stride)
        np.testing.assert_array_equal(F.max_pool2d(x, (2, 3), stride=stride).numpy(), ref.numpy())


# ----- avg_pool2d --------------------------------------------------------------------------
@settings(max_examples=120)
@given(cfg=window_configs(dilation=False), data=st.data())
def test_avg_pool2d_matches_torch(torch, cfg, data):
    x = data.draw(inputs(cfg["shape"]))
    include = data.draw(st.booleans())
    override = data.draw(st.sampled_from([None, None, 1, 3, -2]))
    kw = dict(kernel_size=cfg["k"], stride=cfg["s"], padding=cfg["p"], ceil_mode=cfg["ceil_mode"],
              count_include_pad=include, divisor_override=override)
    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    out_t = torch.nn.functional.avg_pool2d(xt, **kw)
    g = _grad_out(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(g))
    xa = Tensor(x, requires_grad=True)
    out = F.avg_pool2d(xa, **kw)
    out.backward(g)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@settings(max_examples=40)
@given(cfg=window_configs(dilation=False), data=st.data())
def test_avg_pool2d_matches_loop_reference(cfg, data):
    x = data.draw(inputs(cfg["shape"], np.float64))
    include = data.draw(st.booleans())
    override = data.draw(st.sampled_from([None, 2]))
    out = F.avg_pool2d(x, cfg["k"], cfg["s"], cfg["p"], cfg["ceil_mode"], include, override)
    ref = ref_avg_pool2d(x, cfg["k"], cfg["s"], cfg["p"], cfg["ceil_mode"], include, override)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_avg_pool2d_ceil_mode_divisor_clipped_to_padded_input(torch):
    # 5x5, kernel 3, stride 2, pad 1, ceil: the last window [3, 6) fits the padded input
    # exactly; kernel 2 stride 2 pad 0: the last window [4, 6) is clipped to [4, 5).
    x = np.ones((1, 1, 5, 5), np.float32)
    for args in [(3, 2, 1), (2, 2, 0)]:
        for include in (True, False):
            got = F.avg_pool2d(x, *args, ceil_mode=True, count_include_pad=include).numpy()
            ref = torch.nn.functional.avg_pool2d(torch.tensor(x), *args, ceil_mode=True,
                                                 count_include_pad=include).numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-6)
    corner = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True).numpy()[0, 0, 0, 0]
    assert corner == pytest.approx(4 / 9)


# ----- adaptive pooling ------------------------------------------------------------------
@st.composite
def adaptive_configs(draw):
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    oh = draw(st.one_of(st.integers(1, 12), st.none()))
    ow = draw(st.integers(1, 12))
    size = draw(st.sampled_from(["pair", "int"]))
    output_size = (oh, ow) if size == "pair" else ow
    return (N, C, H, W), output_size


@settings(max_examples=110)
@given(cfg=adaptive_configs(), data=st.data())
def test_adaptive_avg_pool2d_matches_torch(torch, cfg, data):
    shape, output_size = cfg
    x = data.draw(inputs(shape))
    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    out_t = torch.nn.functional.adaptive_avg_pool2d(xt, output_size)
    g = _grad_out(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(g))
    xa = Tensor(x, requires_grad=True)
    out = F.adaptive_avg_pool2d(xa, output_size)
    out.backward(g)
    assert out.shape == tuple(out_t.shape) and out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@settings(max_examples=110)
@given(cfg=adaptive_configs(), data=st.data())
def test_adaptive_max_pool2d_matches_torch(torch, cfg, data):
    shape, output_size = cfg
    x = data.draw(inputs(shape))
    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    out_t, idx_t = torch.nn.functional.adaptive_max_pool2d(xt, output_size, return_indices=True)
    g = _grad_out(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(g))
    xa = Tensor(x, requires_grad=True)
    out, idx = F.adaptive_max_pool2d(xa, output_size, return_indices=True)
    out.backward(g)
    np.testing.assert_array_equal(out.numpy(), out_t.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@settings(max_examples=40)
@given(cfg=adaptive_configs(), data=st.data())
def test_adaptive_pools_match_loop_reference(cfg, data):
    shape, output_size = cfg
    x = data.draw(inputs(shape, np.float64))
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    size = tuple(n if o is None else o for o, n in zip(size, shape[2:]))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, output_size).numpy(),
                               ref_adaptive(x, size, np.mean), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(F.adaptive_max_pool2d(x, output_size).numpy(),
                                  ref_adaptive(x, size, np.max))


def test_adaptive_max_pool2d_nan_follows_torch(torch):
    x = np.array([[[[np.nan, 1, np.nan], [2, np.nan, 0], [-np.inf, -np.inf, -np.inf]]]], np.float32)
    for size in [(2, 2), (1, 1), (3, 2)]:
        out, idx = F.adaptive_max_pool2d(x, size, return_indices=True)
        out_t, idx_t = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), size, True)
        np.testing.assert_array_equal(out.numpy(), out_t.numpy())
        np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())


def test_adaptive_empty_output_and_unbatched(torch, rng):
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    assert F.adaptive_avg_pool2d(x, 0).shape == (2, 0, 0)
    assert F.adaptive_max_pool2d(x, (0, 3)).shape == (2, 0, 3)
    out, idx = F.adaptive_max_pool2d(x, (None, 2), return_indices=True)
    ref, ref_idx = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), (None, 2), True)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())


def test_global_pools(torch, rng):
    x = rng.standard_normal((2, 3, 5, 7))
    xa = Tensor(x, requires_grad=True)
    avg, mx = F.global_avg_pool2d(xa), F.global_max_pool2d(xa)
    assert avg.shape == mx.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(avg.numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(mx.numpy(), x.max(axis=(2, 3), keepdims=True))
    (avg.sum() + mx.sum()).backward()
    expected = np.full(x.shape, 1 / 35) + (x == x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(xa.grad, expected, rtol=1e-12)
    assert F.global_max_pool2d(x[0]).shape == (3, 1, 1)


@pytest.mark.parametrize("name, args", [
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=(3, 2), stride=2, padding=1, count_include_pad=False)),
    ("adaptive_avg_pool2d", dict(output_size=(3, 4))),
    ("adaptive_max_pool2d", dict(output_size=(4, None))),
])
def test_unbatched_input_matches_torch(torch, rng, name, args):
    x = rng.integers(-2, 3, (3, 7, 6)).astype(np.float32)  # (C, H, W) with ties
    xt = torch.tensor(x, requires_grad=True)
    out_t = getattr(torch.nn.functional, name)(xt, **args)
    g = _grad_out(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(g))
    xa = Tensor(x, requires_grad=True)
    out = getattr(F, name)(xa, **args)
    out.backward(g)
    assert out.shape == tuple(out_t.shape)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-6, atol=1e-6)


# ----- float64 finite differences -------------------------------------------------------
def _distinct(shape, seed):
    """Values 0.1 apart, so a 1e-6 perturbation never changes which pixel is the maximum."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1


@pytest.mark.parametrize("args", [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
    dict(kernel_size=2, stride=3, ceil_mode=True),
])
def test_max_pool2d_gradcheck(args):
    check_gradients(lambda t: F.max_pool2d(t, **args), _distinct((2, 2, 6, 7), 0))


@pytest.mark.parametrize("args", [
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), count_include_pad=False),
    dict(kernel_size=2, divisor_override=3),
])
def test_avg_pool2d_gradcheck(args, rng):
    check_gradients(lambda t: F.avg_pool2d(t, **args), rng.standard_normal((2, 2, 6, 7)))


@pytest.mark.parametrize("size", [(3, 4), (4, None), 1, (8, 9)])
def test_adaptive_gradcheck(size, rng):
    check_gradients(lambda t: F.adaptive_avg_pool2d(t, size), rng.standard_normal((2, 2, 5, 7)))
    check_gradients(lambda t: F.adaptive_max_pool2d(t, size), _distinct((2, 2, 5, 7), 1))


# ----- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda x: F.max_pool2d(x[0, 0], 2), r"max_pool2d: expected input to be 3-D or 4-D, got 2-D"),
    (lambda x: F.avg_pool2d(x[None], 2), r"avg_pool2d: expected input to be 3-D or 4-D, got 5-D"),
    (lambda x: F.max_pool2d(x, 7), r"max_pool2d: output size .* kernel \(7, 7\) is larger than "
                                   r"the padded input \(4, 5\)"),
    (lambda x: F.max_pool2d(x, 3, dilation=3, padding=1),
     r"max_pool2d: output size \(0, 1\).*effective\) kernel \(7, 7\).*padded input \(6, 7\)"),
    (lambda x: F.avg_pool2d(x, 5, padding=(0, 2), stride=1), r"avg_pool2d: output size \(0, 5\)"),
    (lambda x: F.max_pool2d(x, 2, padding=2), r"max_pool2d: padding \(2, 2\) must be at most half "
                                              r"of kernel_size \(2, 2\)"),
    (lambda x: F.avg_pool2d(x, (3, 1), padding=(1, 1)), r"avg_pool2d: padding \(1, 1\) must be at "
                                                        r"most half of kernel_size \(3, 1\)"),
    (lambda x: F.max_pool2d(x, 2, stride=0), r"max_pool2d: stride must be >= 1.*\(0, 0\)"),
    (lambda x: F.max_pool2d(x, (0, 2)), r"max_pool2d: kernel_size must be >= 1.*\(0, 2\)"),
    (lambda x: F.max_pool2d(x, 2, dilation=0), r"max_pool2d: dilation must be >= 1"),
    (lambda x: F.max_pool2d(x, 2, padding=-1), r"max_pool2d: padding must be >= 0"),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=0), r"avg_pool2d: divisor_override must not be zero"),
    (lambda x: F.adaptive_avg_pool2d(x, -1), r"adaptive_avg_pool2d: output_size must be >= 0.*\(-1, -1\)"),
    (lambda x: F.adaptive_max_pool2d(x, (1, 2, 3)), r"adaptive_max_pool2d: output_size must have 2"),
    (lambda x: F.max_pool2d(x[:, :0], 2), r"max_pool2d: expected non-empty .* shape \(2, 0, 4, 5\)"),
])
def test_errors_name_op_argument_and_values(call, match):
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match=match):
        call(x)


def test_type_errors():
    with pytest.raises(TypeError, match="max_pool2d: input must be a floating-point"):
        F.max_pool2d(np.zeros((1, 1, 4, 4), np.int64), 2)
    with pytest.raises(TypeError, match="avg_pool2d: divisor_override must be an int"):
        F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, divisor_override=1.5)
    with pytest.raises(TypeError, match="max_pool2d: kernel_size must be an int or a pair"):
        F.max_pool2d(np.zeros((1, 1, 4, 4)), 2.0)
