"""conv2d: a nested-loop reference, PyTorch on random configurations, finite differences,
the engine's two input-gradient methods against each other, and the bounded workspace."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from atrous.kernels import conv_gemm
from atrous.kernels.algorithms import use_algorithm
from gradcheck import check_gradients


# ----- the reference: a direct convolution written out as loops -----------------------------
def conv2d_ref(x, w, b=None, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """y[n, o, i, j] = b[o] + sum_{c, kh, kw} x[n, g*Cg + c, i*SH - top + kh*DH, j*SW - left + kw*DW]
    * w[o, c, kh, kw] over the taps that land inside x (outside is zero padding)."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (SH, SW), (DH, DW) = stride, dilation
    (top, bottom), (left, right) = padding
    OH = (H + top + bottom - DH * (KH - 1) - 1) // SH + 1
    OW = (W + left + right - DW * (KW - 1) - 1) // SW + 1
    Og = O // groups
    y = np.zeros((N, O, OH, OW), dtype=np.float64)
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0 if b is None else float(b[o])
                    for c in range(Cg):
                        for kh in range(KH):
                            h = i * SH - top + kh * DH
                            if not 0 <= h < H:
                                continue
                            for kw in range(KW):
                                v = j * SW - left + kw * DW
                                if 0 <= v < W:
                                    acc += float(x[n, g * Cg + c, h, v]) * float(w[o, c, kh, kw])
                    y[n, o, i, j] = acc
    return y


def same_pad(k, d):
    """PyTorch's 'same': total d*(k-1), the odd pixel at the end."""
    total = d * (k - 1)
    return (total // 2, total - total // 2)


# (N, C, H, W), (O, KH, KW), stride, padding, dilation, groups
CASES = [
    ((2, 3, 7, 7), (4, 3, 3), 1, 0, 1, 1),
    ((2, 3, 7, 7), (4, 3, 3), 2, 1, 1, 1),
    ((2, 3, 8, 9), (2, 3, 3), (2, 3), (1, 2), 1, 1),
    ((1, 2, 6, 5), (3, 2, 4), 1, "same", 1, 1),  # even kernel, extra pad at the bottom
    ((2, 2, 7, 6), (3, 4, 2), 1, "same", 2, 1),  # even kernels, dilation 2
    ((2, 2, 7, 6), (3, 3, 3), 1, "same", (2, 3), 1),
    ((2, 3, 5, 6), (2, 3, 3), 1, "valid", 1, 1),
    ((2, 4, 9, 9), (4, 3, 3), 1, 2, 2, 1),  # atrous, rate 2
    ((2, 4, 6, 7), (6, 3, 3), 1, 1, 1, 2),  # two groups
    ((2, 4, 6, 7), (4, 3, 3), 1, 1, 1, 4),  # depthwise
    ((2, 3, 6, 7), (6, 3, 3), 2, 1, 1, 3),  # depthwise with channel multiplier 2
    ((2, 4, 6, 5), (5, 1, 1), 1, 0, 1, 1),  # 1x1
    ((2, 4, 7, 5), (5, 1, 1), 2, 0, 1, 1),  # strided 1x1
    ((2, 4, 5, 5), (3, 1, 1), 1, 1, 1, 1),  # 1x1 with padding
    ((1, 1, 5, 8), (1, 2, 5), 1, 0, 1, 1),  # batch 1, single channel, non-square
    ((3, 1, 4, 4), (2, 4, 4), 3, 0, 1, 1),  # a single output pixel per image
]


def _pad_pairs(padding, kernel, dilation):
    k, d = kernel, (dilation if isinstance(dilation, tuple) else (dilation, dilation))
    if padding == "same":
        return tuple(same_pad(k[i], d[i]) for i in range(2))
    if padding == "valid":
        return ((0, 0), (0, 0))
    p = padding if isinstance(padding, tuple) else (padding, padding)
    return ((p[0], p[0]), (p[1], p[1]))


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CASES)
def test_matches_loop_reference(xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    O, KH, KW = ws
    x = rng.standard_normal(xs)
    w = rng.standard_normal((O, xs[1] // groups, KH, KW))
    b = rng.standard_normal(O)
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref = conv2d_ref(x, w, b, _pair(stride), _pad_pairs(padding, (KH, KW), dilation), _pair(dilation), groups)
    assert y.dtype == np.float64 and y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    # float32 in, float32 out, same numbers to float32 precision
    y32 = F.conv2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32),
                   stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CASES[::2] + CASES[1::4])
def test_gradients_finite_differences(xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(2)
    O, KH, KW = ws
    x = rng.standard_normal((min(xs[0], 2),) + xs[1:])
    w = rng.standard_normal((O, xs[1] // groups, KH, KW))
    b = rng.standard_normal(O)
    check_gradients(
        lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups),
        x, w, b,
    )


def test_same_padding_keeps_size_for_every_kernel_and_dilation():
    x = np.random.default_rng(3).standard_normal((1, 1, 7, 6))
    for k in range(1, 6):
        for d in range(1, 4):
            if d * (k - 1) + 1 > 12:
                continue
            w = np.random.default_rng(k).standard_normal((1, 1, k, k))
            y = F.conv2d(x, w, padding="same", dilation=d)
            ref = conv2d_ref(x, w, None, (1, 1), (same_pad(k, d),) * 2, (d, d))
            assert y.shape == (1, 1, 7, 6)
            np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)


def test_unbatched_input():
    rng = np.random.default_rng(4)
    x = Tensor(rng.standard_normal((3, 6, 5)), requires_grad=True)
    w = rng.standard_normal((2, 3, 3, 3))
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (2, 6, 5)
    np.testing.assert_allclose(y.numpy(), conv2d_ref(x.numpy()[None], w, padding=((1, 1), (1, 1)))[0])
    y.sum().backward()
    assert x.grad.shape == (3, 6, 5)


def test_input_gradient_methods_agree():
    """The stride-1 fast path (convolution with the flipped weight) against col2im."""
    rng = np.random.default_rng(5)
    for (t, b_), (l, r), d, groups in [((1, 1), (1, 1), (1, 1), 1), ((0, 2), (3, 0), (2, 1), 2),
                                       ((2, 0), (0, 1), (1, 3), 4), ((-1, 2), (1, -1), (1, 1), 1)]:
        x = rng.standard_normal((2, 4, 9, 8))
        w = rng.standard_normal((6 if groups != 4 else 4, 4 // groups, 3, 2))
        y = conv_gemm.forward(x, w, (1, 1), ((t, b_), (l, r)), d, groups)
        gy = rng.standard_normal(y.shape)
        a = conv_gemm.input_grad(gy, w, (9, 8), (1, 1), ((t, b_), (l, r)), d, groups, method="conv")
        c = conv_gemm.input_grad(gy, w, (9, 8), (1, 1), ((t, b_), (l, r)), d, groups, method="col2im")
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_negative_padding_crops():
    """The engine's (lo, hi) padding may be negative: it then crops the input first."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 7, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    y = conv_gemm.forward(x, w, (1, 2), ((-1, 2), (1, -2)), (1, 1), 1)
    ref = conv2d_ref(np.pad(x[:, :, 1:, :-2], ((0, 0), (0, 0), (0, 2), (1, 0))), w, stride=(1, 2))
    np.testing.assert_allclose(y, ref, atol=1e-12)


# ----- the bounded workspace -----------------------------------------------------------------
@pytest.fixture
def tiny_workspace():
    old = atrous.config.workspace_bytes
    try:
        yield
    finally:
        atrous.config.workspace_bytes = old


@pytest.mark.parametrize("stride, columns", [(1, 1), (2, 1), (1, 200), (2, 60)])
def test_workspace_chunks_give_identical_results(tiny_workspace, monkeypatch, stride, columns):
    """Chunks of whole image blocks under a tiny workspace; bitwise the same numbers."""
    monkeypatch.setattr(conv_gemm, "GEMM_COLUMNS", columns)  # blocks of 1 or 2 images
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)

    def run():
        X, W, B_ = (Tensor(a, requires_grad=True) for a in (x, w, b))
        with use_algorithm("gemm"):  # this engine's chunks; conv_nhwc has its own test
            y = F.conv2d(X, W, B_, stride=stride, padding=1)
            y.backward(np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape))
        return y.numpy(), X.grad, W.grad, B_.grad

    OH = (9 + 2 - 3) // stride + 1
    block = conv_gemm.block_size(6, OH * OH)
    assert block == (1 if columns == 1 else 2)
    full = run()
    batches = []
    real_chunks = conv_gemm.im2col_chunks

    def spy(*args, **kwargs):
        for n0, n1, cols in real_chunks(*args, **kwargs):
            batches.append(n1 - n0)
            yield n0, n1, cols

    monkeypatch.setattr(conv_gemm, "im2col_chunks", spy)
    per_image = ((3 * 9 + 4) * OH * OH + 3 * 11 * 11) * 4  # float32 columns, GEMM result, padded input
    atrous.config.workspace_bytes = 2 * block * per_image + 1  # two blocks per chunk
    chunked = run()
    assert 2 * block in batches and max(batches) <= 2 * block
    assert all(n % block == 0 for n in batches)
    atrous.config.workspace_bytes = 1  # less than one image: one block at a time
    batches.clear()
    single = run()
    assert set(batches) == {block}
    for a, c, s in zip(full, chunked, single):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, s)


def test_block_size():
    assert conv_gemm.block_size(8, 49) == 8  # 392 columns
    assert conv_gemm.block_size(8, 3136) == 1
    assert conv_gemm.block_size(7, 49) == 7
    assert conv_gemm.block_size(7, 400) == 1  # 7 is prime and 7*400 > GEMM_COLUMNS
    assert conv_gemm.block_size(12, 300) == 6


# ----- differential tests against PyTorch ----------------------------------------------------
@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if draw(st.integers(0, 5)) == 0:  # depthwise
        cg = 1
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    if kind == "same":
        stride = (1, 1)
        padding = "same"
    elif kind == "valid":
        padding = "valid"
    elif kind == "int":
        padding = draw(st.integers(0, 2))
    else:
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    pads = _pad_pairs(padding, (KH, KW), dilation)
    # input at least as large as the dilated kernel (after padding), plus a few border pixels
    H = max(1, dilation[0] * (KH - 1) + 1 - sum(pads[0])) + draw(st.integers(0, 5))
    W = max(1, dilation[1] * (KW - 1) + 1 - sum(pads[1])) + draw(st.integers(0, 5))
    N = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    contiguous = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return dict(N=N, C=groups * cg, O=groups * og, H=H, W=W, K=(KH, KW), stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=bias,
                contiguous=contiguous, seed=seed)


def _close(ours, ref, what):
    ref = ref.detach().numpy()
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels
@settings(max_examples=130)
@given(conv_configs())
def test_conv2d_matches_torch(torch, cfg):
    rng = np.random.default_rng(cfg["seed"])
    N, C, O, H, W = cfg["N"], cfg["C"], cfg["O"], cfg["H"], cfg["W"]
    big = rng.standard_normal((N, C, H, 2 * W)).astype(np.float32)
    x = big[:, :, :, ::2] if not cfg["contiguous"] else np.ascontiguousarray(big[:, :, :, :W])
    w = rng.standard_normal((O, C // cfg["groups"]) + cfg["K"]).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32) if cfg["bias"] else None
    args = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    X, Wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    B = Tensor(b, requires_grad=True) if b is not None else None
    y = F.conv2d(X, Wt, B, **args)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)

    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, **args)
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape) and y.dtype == np.float32
    _close(y, ty, "output")
    _close(X.grad, tx.grad, "input grad")
    _close(Wt.grad, tw.grad, "weight grad")
    if b is not None:
        _close(B.grad, tb.grad, "bias grad")
