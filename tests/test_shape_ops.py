"""flatten, pad, cat, stack, interpolate: plain-loop references, PyTorch on random
configurations (forward and gradient), float64 finite differences, and the error messages."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients

FLOATS = [np.float32, np.float64]


def noncontig(a):
    """The same values in a non-contiguous layout (last two axes stored transposed)."""
    if a.ndim < 2:
        return np.repeat(a, 2)[::2]  # stride of two elements
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)


def run_both(torch, atrous_fn, torch_fn, arrays, seed=0):
    """Forward and backward of both libraries with the same random upstream gradient.

    Returns (atrous output, torch output, [(atrous grad, torch grad) per input])."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    out, ref = atrous_fn(*ours), torch_fn(*theirs)
    G = np.random.default_rng(seed).standard_normal(ref.shape).astype(out.dtype)
    out.backward(G)
    ref.backward(torch.tensor(G))
    return out, ref.detach().numpy(), [(t.grad, r.grad.numpy()) for t, r in zip(ours, theirs)]


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


# ----- flatten ------------------------------------------------------------------------------
@st.composite
def flatten_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=5)))
    n = max(len(shape), 1)
    s = draw(st.integers(-n, n - 1))
    e = draw(st.integers(-n, n - 1))
    assume(s % n <= e % n)
    return shape, s, e, draw(st.sampled_from(FLOATS)), draw(st.booleans()), draw(st.integers(0, 99))


@settings(max_examples=120)
@given(flatten_cases())
def test_flatten_matches_torch(torch, case):
    shape, s, e, dtype, nc, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x = noncontig(x) if nc and x.ndim >= 2 else x
    out, ref, grads = run_both(torch, lambda t: F.flatten(t, s, e), lambda t: torch.flatten(t, s, e), [x], seed)
    assert out.shape == ref.shape and out.dtype == dtype
    np.testing.assert_array_equal(out.data, ref)
    np.testing.assert_array_equal(grads[0][0], grads[0][1])


def test_flatten_plain_reference():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    # Row-major order: element (n, c, h, w) lands at position (c*4 + h)*5 + w of row n.
    expected = np.zeros((2, 60), np.float32)
    for n in range(2):
        for c in range(3):
            for h in range(4):
                for w in range(5):
                    expected[n, (c * 4 + h) * 5 + w] = x[n, c, h, w]
    np.testing.assert_array_equal(F.flatten(x, 1).data, expected)
    assert F.flatten(x).shape == (120,)  # torch.flatten's default start_dim is 0
    assert F.flatten(x, 1, 2).shape == (2, 12, 5)
    assert F.flatten(x, -2).shape == (2, 3, 20)
    assert F.flatten(np.float32(3.0)).shape == (1,)
    assert F.flatten(np.zeros((2, 0, 3), np.float32), 1).shape == (2, 0)


def test_flatten_gradcheck():
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 2))
    check_gradients(lambda t: F.flatten(t, 1, 2) * F.flatten(t, 1, 2), x)


def test_flatten_errors():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"flatten: start_dim=2 comes after end_dim=1"):
        F.flatten(x, 2, 1)
    with pytest.raises(ValueError, match=r"flatten: start_dim=3 is out of range for a 3-D input"):
        F.flatten(x, 3)
    with pytest.raises(TypeError, match="flatten: end_dim"):
        F.flatten(x, 0, 1.5)


# ----- pad ----------------------------------------------------------------------------------
def pad_reference(x, pads, mode, value=0.0):
    """Pad element by element: find each output element's source with explicit rules."""
    k = len(pads) // 2
    spec = {x.ndim - 1 - i: (pads[2 * i], pads[2 * i + 1]) for i in range(k)}
    out_shape = tuple(n + sum(spec.get(ax, (0, 0))) for ax, n in enumerate(x.shape))
    out = np.empty(out_shape, x.dtype)
    for o in np.ndindex(out_shape):
        src = []
        for ax, oi in enumerate(o):
            lo, hi = spec.get(ax, (0, 0))
            n = x.shape[ax]
            if mode == "circular":
                # crop first (negative pads), then wrap the cropped run [start, start + m)
                start, m = max(-lo, 0), n - max(-lo, 0) - max(-hi, 0)
                j = start + (oi - max(lo, 0)) % m
            else:
                j = oi - lo
                if mode == "reflect":
                    while j < 0 or j >= n:
                        j = -j if j < 0 else 2 * (n - 1) - j
                elif mode == "replicate":
                    j = min(max(j, 0), n - 1)
            src.append(j)
        if mode == "constant" and any(j < 0 or j >= n for j, n in zip(src, x.shape)):
            out[o] = value
        else:
            out[o] = x[tuple(src)]
    return out


@pytest.mark.parametrize(
    "mode,shape,pads",
    [
        ("constant", (2, 3, 4, 5), (1, 2, 0, 3)),
        ("constant", (2, 3, 4, 5), (-1, 2, 2, -2, 1, 0, 0, 1)),
        ("reflect", (2, 3, 4, 5), (4, 1, 3, 0)),
        ("reflect", (2, 4, 5), (-2, 3)),
        ("replicate", (2, 3, 4, 5), (3, 7, 0, 2)),
        ("replicate", (1, 2, 3, 4, 5), (1, 2, 3, 0, -1, 2)),
        ("circular", (2, 3, 4, 5), (5, 2, 4, 1)),
        ("circular", (2, 3, 4, 5), (-1, 3, 2, -1)),
    ],
)
def test_pad_plain_reference(mode, shape, pads):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    value = 2.5 if mode == "constant" else None
    np.testing.assert_array_equal(F.pad(x, pads, mode, value).data, pad_reference(x, pads, mode, value or 0.0))


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    if mode == "constant":
        ndim = draw(st.integers(1, 5))
        k = draw(st.integers(0, min(ndim, 4)))
    else:
        k = draw(st.integers(1, 3))
        ndim = draw(st.integers(k + 1, k + 2))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    pads = []
    for i in range(k):
        n = shape[ndim - 1 - i]
        lo_min = -n if mode == "constant" else -(n - 1)
        hi_max = {"constant": 3, "reflect": n - 1, "replicate": n + 2, "circular": n}[mode]
        lo, hi = draw(st.integers(lo_min, hi_max)), draw(st.integers(lo_min, hi_max))
        m = n - max(-lo, 0) - max(-hi, 0)  # circular: the length left after cropping
        assume(n + lo + hi >= (0 if mode == "constant" else 1))
        assume(mode != "circular" or (m >= 1 and max(lo, hi) <= m))
        pads += [lo, hi]
    return mode, shape, tuple(pads), draw(st.sampled_from(FLOATS)), draw(st.booleans()), draw(st.integers(0, 99))


@settings(max_examples=200)
@given(pad_cases())
def test_pad_matches_torch(torch, case):
    mode, shape, pads, dtype, nc, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x = noncontig(x) if nc else x
    value = 0.5 if mode == "constant" and seed % 2 else None
    out, ref, grads = run_both(
        torch,
        lambda t: F.pad(t, pads, mode, value),
        lambda t: torch.nn.functional.pad(t, pads, mode, value),
        [x],
        seed,
    )
    assert out.shape == ref.shape and out.dtype == dtype
    np.testing.assert_array_equal(out.data, ref)
    np.testing.assert_allclose(grads[0][0], grads[0][1], **tol(dtype))


@settings(max_examples=150)
@given(
    st.sampled_from(["constant", "reflect", "replicate", "circular"]),
    st.lists(st.integers(1, 4), min_size=1, max_size=5),
    st.lists(st.integers(-5, 5), min_size=0, max_size=7),
)
def test_pad_rejects_what_torch_rejects(torch, mode, shape, pads):
    """Over arbitrary (often invalid) pads: where PyTorch refuses we raise a clear error,
    otherwise the results agree."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        ref = torch.nn.functional.pad(torch.tensor(x), tuple(pads), mode).numpy()
    except (RuntimeError, NotImplementedError, ValueError):
        ref = None
    if ref is not None and ref.size == 0 and mode == "circular":
        return  # PyTorch lets circular crop to nothing; we require at least one element
    if ref is None:
        with pytest.raises(ValueError, match="^pad: "):
            F.pad(x, tuple(pads), mode)
    else:
        np.testing.assert_array_equal(F.pad(x, tuple(pads), mode).data, ref)


@pytest.mark.parametrize(
    "mode,pads",
    [("constant", (1, -1, 2, 0)), ("reflect", (2, 1, 1, 2)), ("replicate", (3, 0, 1, 4)), ("circular", (2, -1, 3, 1))],
)
def test_pad_gradcheck(mode, pads):
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 4))
    check_gradients(lambda t: F.pad(t, pads, mode), x)


def test_pad_replicate_gradient_collects_at_the_edge():
    # Replicate (0, 3) repeats the last pixel three more times: its gradient is 4x the upstream.
    x = Tensor(np.zeros((1, 1, 5), np.float32), requires_grad=True)
    F.pad(x, (0, 3), "replicate").sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [1, 1, 1, 1, 4])
    # Reflect (2, 2) on [a b c d e] gives [c b a b c d e d c]: b and d twice, c three times.
    x = Tensor(np.zeros((1, 1, 5), np.float32), requires_grad=True)
    F.pad(x, (2, 2), "reflect").sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [1, 2, 3, 2, 1])


def test_pad_errors():
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match="pad: pad length must be divisible by 2"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"pad: pad of length 10 pads 5 dims but the input is 4-D"):
        F.pad(x, (1,) * 10)
    with pytest.raises(TypeError, match="pad: pad must be a tuple of ints"):
        F.pad(x, (1.0, 1))
    with pytest.raises(ValueError, match="pad: mode must be"):
        F.pad(x, (1, 1), "symmetric")
    with pytest.raises(ValueError, match=r"pad: mode 'reflect' needs each pad less than the size.*\(5, 0\).*size 5"):
        F.pad(x, (5, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match=r"pad: mode 'reflect' with a pad of length 2 needs a 2-D or 3-D input, got 4-D"):
        F.pad(x, (1, 1), "reflect")
    with pytest.raises(ValueError, match=r"pad: mode 'replicate' does not take a value"):
        F.pad(x, (1, 1, 1, 1), "replicate", value=1.0)
    with pytest.raises(ValueError, match=r"pad: padding \(-3, -3\) of dim 3 .* negative size -1"):
        F.pad(x, (-3, -3))
    with pytest.raises(ValueError, match=r"pad: mode 'circular' would wrap around more than once"):
        F.pad(x, (6, 0, 0, 0), "circular")


# ----- cat and stack ------------------------------------------------------------------------
@st.composite
def join_cases(draw, op):
    ndim = draw(st.integers(1, 4))
    base = draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim))
    count = draw(st.integers(1, 4))
    dim = draw(st.integers(-ndim, ndim - 1) if op == "cat" else st.integers(-ndim - 1, ndim))
    shapes = []
    for _ in range(count):
        s = list(base)
        if op == "cat":
            s[dim] = draw(st.integers(0, 3))  # sizes along the joined dim differ (0 allowed)
        shapes.append(tuple(s))
    # Mixed inputs: each is a Tensor that wants a gradient or a plain constant array.
    is_tensor = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    assume(any(is_tensor))
    return shapes, dim, is_tensor, draw(st.sampled_from(FLOATS)), draw(st.booleans()), draw(st.integers(0, 99))


def check_join(torch, op, case):
    shapes, dim, is_tensor, dtype, nc, seed = case
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    xs = [noncontig(x) if nc and x.ndim >= 2 else x for x in xs]
    ours = [Tensor(x, requires_grad=True) if t else x for x, t in zip(xs, is_tensor)]
    theirs = [torch.tensor(x.copy(), requires_grad=t) for x, t in zip(xs, is_tensor)]
    out = getattr(F, op)(ours, dim=dim)
    ref = getattr(torch, op)(theirs, dim=dim)
    assert out.shape == tuple(ref.shape) and out.dtype == dtype
    np.testing.assert_array_equal(out.data, ref.detach().numpy())
    G = rng.standard_normal(ref.shape).astype(dtype)
    out.backward(G)
    ref.backward(torch.tensor(G))
    for o, r in zip(ours, theirs):
        if isinstance(o, Tensor):
            assert o.grad.dtype == dtype
            np.testing.assert_array_equal(o.grad, r.grad.numpy())


@settings(max_examples=120)
@given(join_cases("cat"))
def test_cat_matches_torch(torch, case):
    check_join(torch, "cat", case)


@settings(max_examples=120)
@given(join_cases("stack"))
def test_stack_matches_torch(torch, case):
    check_join(torch, "stack", case)


def test_cat_and_stack_plain_reference():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = 10 + np.arange(3, dtype=np.float32).reshape(1, 3)
    c = 20 + np.arange(4, dtype=np.float32).reshape(2, 2)
    rows = F.cat([a, Tensor(b)]).data
    assert rows.tolist() == [[0, 1, 2], [3, 4, 5], [10, 11, 12]]
    cols = F.cat([a, c], dim=-1).data
    assert cols.tolist() == [[0, 1, 2, 20, 21], [3, 4, 5, 22, 23]]
    s = F.stack([a, a + 100], dim=1).data
    for i in range(2):
        for k in range(2):
            for j in range(3):
                assert s[i, k, j] == a[i, j] + 100 * k


def test_cat_stack_gradients_split_back():
    a = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = Tensor(np.ones((1, 3), np.float32), requires_grad=True)
    w = np.arange(9, dtype=np.float32).reshape(3, 3)
    (F.cat([a, b]) * w).sum().backward()
    np.testing.assert_array_equal(a.grad, w[:2])
    np.testing.assert_array_equal(b.grad, w[2:])
    (F.stack([a, a], dim=2) * np.arange(2, dtype=np.float32)).sum().backward()  # a used twice
    np.testing.assert_array_equal(a.grad, w[:2] + 1)


def test_cat_stack_gradcheck():
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 1, 2)), rng.standard_normal((2, 3, 2))
    check_gradients(lambda x, y: F.cat([x, y, x * y[:, :1]], dim=1), a, b)
    check_gradients(lambda x, y: F.stack([x, y * x, y], dim=-1), a, c)


def test_cat_mixed_dtypes_promote_and_grads_keep_dtype():
    a = Tensor(np.ones((1, 2), np.float32), requires_grad=True)
    b = Tensor(np.ones((1, 2), np.float64), requires_grad=True)
    out = F.cat([a, b])
    assert out.dtype == np.float64  # as torch.cat
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_cat_stack_errors():
    a, b = np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"cat: sizes must match except in dim 0, but tensor 0 has shape \(2, 3\) and tensor 1 has shape \(2, 4\)"):
        F.cat([a, b])
    assert F.cat([a, b], dim=1).shape == (2, 7)
    with pytest.raises(ValueError, match=r"cat: tensors must have the same number of dimensions.*tensor 1 has shape \(3,\)"):
        F.cat([a, np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="cat: expected a non-empty list"):
        F.cat([])
    with pytest.raises(ValueError, match="cat: zero-dimensional tensor"):
        F.cat([np.float32(1.0)])
    with pytest.raises(ValueError, match="cat: dim=2 is out of range for a 2-D input"):
        F.cat([a, a], dim=2)
    with pytest.raises(TypeError, match="cat: tensors must be a list"):
        F.cat(Tensor(a))
    with pytest.raises(ValueError, match=r"stack: expects each tensor to be equal size, but tensor 0 has shape \(2, 3\) and tensor 2 has shape \(2, 4\)"):
        F.stack([a, a, b])
    with pytest.raises(ValueError, match="stack: dim=3 is out of range for a 3-D input"):
        F.stack([a], dim=3)


# ----- interpolate --------------------------------------------------------------------------
def interpolate_reference(x, out_hw, mode, align_corners=False):
    """Per-pixel loops in float64 with the textbook formulas (exact integer floor for nearest)."""
    N, C, H, W = x.shape
    OH, OW = out_hw
    out = np.zeros((N, C, OH, OW))

    def linear_src(o, n_in, n_out):
        if n_in == n_out:
            return o, o, 0.0
        if align_corners:
            s = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            s = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(s)), n_in - 1)
        return i0, min(i0 + 1, n_in - 1), s - i0

    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    if mode == "nearest":
                        out[n, c, oh, ow] = x[n, c, oh * H // OH, ow * W // OW]
                    else:
                        h0, h1, lh = linear_src(oh, H, OH)
                        w0, w1, lw = linear_src(ow, W, OW)
                        out[n, c, oh, ow] = (
                            (1 - lh) * ((1 - lw) * x[n, c, h0, w0] + lw * x[n, c, h0, w1])
                            + lh * ((1 - lw) * x[n, c, h1, w0] + lw * x[n, c, h1, w1])
                        )
    return out


@pytest.mark.parametrize("out_hw", [(8, 10), (3, 2), (5, 7), (1, 1), (4, 13)])
@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_interpolate_plain_reference(out_hw, mode, align):
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    got = F.interpolate(x, size=out_hw, mode=mode, align_corners=align).data
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, interpolate_reference(x, out_hw, mode, bool(align)), rtol=1e-12, atol=1e-12)


def test_interpolate_bilinear_clamps_negative_source_to_the_edge():
    # Upsampling 2 -> 4 without align_corners: output 0 maps to source -0.25, clamped to 0, so it
    # copies pixel 0; output 1 maps to 0.25.
    x = np.array([[[[0.0, 4.0]]]], np.float32)
    out = F.interpolate(x, size=(1, 4), mode="bilinear").data
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 1.0, 3.0, 4.0])
    out = F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=True).data
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 4 / 3, 8 / 3, 4.0], rtol=1e-6)


def test_interpolate_nearest_uses_scale_factor_as_torch():
    # 5 * 1.7 -> 8 outputs; PyTorch reads source floor(o / 1.7), not floor(o * 5 / 8).
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5)
    out = F.interpolate(x, scale_factor=(1, 1.7)).data[0, 0, 0]
    assert out.tolist() == [math.floor(o / 1.7) for o in range(8)]
    out = F.interpolate(x, scale_factor=(1, 1.7), recompute_scale_factor=True).data[0, 0, 0]
    assert out.tolist() == [o * 5 // 8 for o in range(8)]


@st.composite
def interpolate_cases(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    mode, align = draw(
        st.sampled_from([("nearest", None), ("nearest-exact", None), ("bilinear", None), ("bilinear", False), ("bilinear", True)])
    )
    kw = {"mode": mode, "align_corners": align}
    kind = draw(st.sampled_from(["size", "size_pair", "scale", "scale_pair", "scale_recompute"]))
    if kind == "size":
        kw["size"] = draw(st.integers(1, 12))
    elif kind == "size_pair":
        kw["size"] = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    else:
        scale = st.one_of(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 1 / 3]), st.floats(0.25, 4.0))
        sf = draw(scale) if kind == "scale" else (draw(scale), draw(scale))
        pair = sf if isinstance(sf, tuple) else (sf, sf)
        assume(math.floor(shape[2] * pair[0]) >= 1 and math.floor(shape[3] * pair[1]) >= 1)
        kw["scale_factor"] = sf
        if kind == "scale_recompute":
            kw["recompute_scale_factor"] = True
    return shape, kw, draw(st.sampled_from(FLOATS)), draw(st.booleans()), draw(st.integers(0, 99))


@settings(max_examples=300)
@given(interpolate_cases())
def test_interpolate_matches_torch(torch, case):
    shape, kw, dtype, nc, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x = noncontig(x) if nc else x
    out, ref, grads = run_both(
        torch, lambda t: F.interpolate(t, **kw), lambda t: torch.nn.functional.interpolate(t, **kw), [x], seed
    )
    assert out.shape == ref.shape and out.dtype == dtype
    if kw["mode"] == "bilinear":
        np.testing.assert_allclose(out.data, ref, **tol(dtype))
    else:
        np.testing.assert_array_equal(out.data, ref)
    np.testing.assert_allclose(grads[0][0], grads[0][1], **tol(dtype))


@pytest.mark.parametrize(
    "kw",
    [
        dict(size=(5, 7), mode="nearest"),
        dict(scale_factor=1.5, mode="nearest"),
        dict(size=(5, 7), mode="bilinear"),
        dict(size=(2, 3), mode="bilinear"),
        dict(scale_factor=(2.0, 0.75), mode="bilinear", align_corners=True),
        dict(scale_factor=1.7, mode="bilinear", align_corners=False),
    ],
)
def test_interpolate_gradcheck(kw):
    x = np.random.default_rng(5).standard_normal((2, 2, 3, 4))
    check_gradients(lambda t: F.interpolate(t, **kw), x)


def test_interpolate_backward_is_the_adjoint():
    # <interp(x), g> == <x, interp^T(g)> for random x, g: the scatter is the exact transpose.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 5, 4))
    for kw in [dict(size=(13, 9), mode="bilinear"), dict(scale_factor=3, mode="nearest")]:
        t = Tensor(x, requires_grad=True)
        out = F.interpolate(t, **kw)
        g = rng.standard_normal(out.shape)
        out.backward(g)
        assert np.isclose((out.data * g).sum(), (x * t.grad).sum(), rtol=1e-12)


def test_interpolate_errors():
    x = np.zeros((1, 2, 4, 5), np.float32)
    with pytest.raises(ValueError, match="interpolate: exactly one of size or scale_factor must be given, both were"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="interpolate: exactly one of size or scale_factor must be given, neither was"):
        F.interpolate(x)
    with pytest.raises(ValueError, match=r"interpolate: expected a 4-D \(N, C, H, W\) input .* got 3-D with shape \(2, 4, 5\)"):
        F.interpolate(x[0], size=3, mode="bilinear")
    with pytest.raises(ValueError, match="interpolate: mode must be"):
        F.interpolate(x, size=3, mode="bicubic")
    with pytest.raises(ValueError, match="interpolate: align_corners can only be set with mode 'bilinear'"):
        F.interpolate(x, size=3, align_corners=False)
    with pytest.raises(ValueError, match=r"interpolate: input and output sizes must be greater than 0.*H=0"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(ValueError, match="interpolate: size must be one int or one per spatial dim"):
        F.interpolate(x, size=(3, 3, 3))
    with pytest.raises(TypeError, match="interpolate: size must be an int or a pair"):
        F.interpolate(x, size=3.0)


def test_shape_ops_accept_lists_and_preserve_dtype():
    assert F.pad([[1.0, 2.0]], (1, 1)).dtype == np.float32  # Python floats -> float32, as torch
    for dtype in FLOATS:
        x = np.ones((1, 1, 2, 2), dtype)
        for out in [F.flatten(x), F.pad(x, (1, 1, 1, 1), "reflect"), F.cat([x, x]), F.stack([x]),
                    F.interpolate(x, scale_factor=2, mode="bilinear"), F.interpolate(x, size=3)]:
            assert out.dtype == dtype


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "bilinear"])
@pytest.mark.parametrize("scale", [(1.05, 2.05), (2.1, 1.09), (0.51, 1.0), (1 / 3, 3.0)])
def test_interpolate_scales_that_round_to_same_or_double_size(torch, mode, scale):
    """floor(10 * 1.05) = 10 and floor(7 * 2.1) = 14: PyTorch then copies (same size) or, for
    legacy nearest, halves the index (double size) instead of using 1/scale_factor."""
    x = np.random.default_rng(7).standard_normal((2, 2, 10, 7)).astype(np.float32)
    out, ref, grads = run_both(
        torch,
        lambda t: F.interpolate(t, scale_factor=scale, mode=mode),
        lambda t: torch.nn.functional.interpolate(t, scale_factor=scale, mode=mode),
        [x],
    )
    np.testing.assert_allclose(out.data, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads[0][0], grads[0][1], rtol=1e-5, atol=1e-6)
