"""atrous.compat.tf against TensorFlow's documented semantics (TensorFlow itself is not a test
dependency): the SAME rule by hand and by brute force, plain-loop NHWC/HWIO references for
conv2d, depthwise, atrous and transposed convolution, the adjoint identity, PyTorch on random
configurations, Keras-layout kernels through the converters, and finite differences."""
import doctest

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor, nn
from atrous.compat import tf
from gradcheck import check_gradients


# ----- the SAME rule, written out independently ----------------------------------------------
def same_total(n, k, s, d=1):
    """TensorFlow's SAME: ceil(n/s) outputs, total padding max((out-1)*s + (k-1)*d + 1 - n, 0)."""
    out = -(-n // s)
    return max((out - 1) * s + (k - 1) * d + 1 - n, 0)


def same_pads(n, k, s, d=1):
    total = same_total(n, k, s, d)
    return total // 2, total - total // 2  # the odd pixel goes to the bottom/right


def brute_same_total(n, k, s, d=1):
    """Smallest total padding that fits as many windows as there are positions 0, s, 2s, ... < n."""
    wanted = len(range(0, n, s))
    span = (k - 1) * d + 1
    for total in range(0, span + s + 1):
        starts = [p for p in range(0, n + total, s) if p + span <= n + total]
        if len(starts) >= wanted:
            return total
    raise AssertionError("no padding found")


# (in, kernel, stride, dilation) -> (out, pad_top, pad_bottom), computed by hand.
HAND = {
    (5, 3, 1, 1): (5, 1, 1),
    (4, 3, 1, 1): (4, 1, 1),
    (4, 4, 1, 1): (4, 1, 2),  # even kernel: total 3, the odd pixel at the bottom
    (5, 2, 1, 1): (5, 0, 1),
    (5, 1, 2, 1): (3, 0, 0),
    (5, 3, 2, 1): (3, 1, 1),  # (3-1)*2 + 3 - 5 = 2
    (4, 3, 2, 1): (2, 0, 1),  # (2-1)*2 + 3 - 4 = 1: PyTorch's padding=1 would pad the top
    (6, 3, 2, 1): (3, 0, 1),
    (7, 4, 2, 1): (4, 1, 2),  # 3*2 + 4 - 7 = 3
    (6, 1, 3, 1): (2, 0, 0),
    (7, 2, 3, 1): (3, 0, 1),  # 2*3 + 2 - 7 = 1
    (8, 4, 3, 1): (3, 1, 1),  # 2*3 + 4 - 8 = 2
    (9, 3, 3, 1): (3, 0, 0),  # 2*3 + 3 - 9 = 0
    (2, 4, 3, 1): (1, 1, 1),  # 0 + 4 - 2 = 2
    (1, 4, 2, 1): (1, 1, 2),
    (5, 3, 1, 2): (5, 2, 2),  # dilated span 5
    (6, 3, 2, 2): (3, 1, 2),  # 2*2 + 5 - 6 = 3
}


@pytest.mark.parametrize("n, k, s, d", sorted(HAND))
def test_same_padding_hand_computed(n, k, s, d):
    out, top, bottom = HAND[(n, k, s, d)]
    assert same_pads(n, k, s, d) == (top, bottom)
    assert brute_same_total(n, k, s, d) == top + bottom
    y = tf.conv2d(np.ones((1, n, n, 1)), np.ones((k, k, 1, 1)), s, "SAME", dilations=d)
    assert y.shape == (1, out, out, 1)


def test_same_formula_equals_brute_force_odd_and_even():
    for n in range(1, 13):
        for k in range(1, 5):
            for s in range(1, 4):
                for d in (1, 2, 3):
                    assert same_total(n, k, s, d) == brute_same_total(n, k, s, d), (n, k, s, d)
                    top, bottom = same_pads(n, k, s, d)
                    out = len(range(0, n, s))
                    assert (n + top + bottom - (k - 1) * d - 1) // s + 1 == out


# Both axes at once: rows use (H, KH, SH, DH), columns another draw from the same grid.
GRID = [(n, k, s, d) for n in range(1, 9) for k in range(1, 5) for s in range(1, 4) for d in (1, 2)]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_same_window_positions(fmt):
    """Each output reads the input pixels TensorFlow documents: tap kh of output oh reads row
    oh*s - pad_top + kh*d (zero outside), pad_top = total // 2. One-hot filters read them out."""
    for (H, KH, SH, DH), (W, KW, SW, DW) in zip(GRID, GRID[::-1]):
        x = np.zeros((1, H, W, 1))
        x[0, :, :, 0] = (np.arange(H)[:, None] + 1) * 100 + np.arange(W)[None, :] + 1
        f = np.zeros((KH, KW, 1, KH * KW))
        for kh in range(KH):
            for kw in range(KW):
                f[kh, kw, 0, kh * KW + kw] = 1.0
        xin = x if fmt == "NHWC" else x.transpose(0, 3, 1, 2)
        y = tf.conv2d(xin, f, [SH, SW], "SAME", data_format=fmt, dilations=[DH, DW]).numpy()
        if fmt == "NCHW":
            y = y.transpose(0, 2, 3, 1)
        OH, OW = -(-H // SH), -(-W // SW)
        assert y.shape == (1, OH, OW, KH * KW)
        top, left = same_pads(H, KH, SH, DH)[0], same_pads(W, KW, SW, DW)[0]
        for oh in range(OH):
            for ow in range(OW):
                for kh in range(KH):
                    for kw in range(KW):
                        i, j = oh * SH - top + kh * DH, ow * SW - left + kw * DW
                        want = (i + 1) * 100 + j + 1 if 0 <= i < H and 0 <= j < W else 0
                        assert y[0, oh, ow, kh * KW + kw] == want, ((H, KH, SH, DH), (W, KW, SW, DW), oh, ow)


def test_same_stride2_ones_even_and_odd():
    """Hand-computed: a 3x3 window of ones, stride 2, SAME. Even 4x4: pads (0, 1), so the first
    window covers 9 pixels and the last row/column windows 6 and 4. Odd 5x5: pads (1, 1)."""
    k = np.ones((3, 3, 1, 1))
    even = tf.conv2d(np.ones((1, 4, 4, 1)), k, 2, "SAME").numpy()[0, :, :, 0]
    np.testing.assert_array_equal(even, [[9, 6], [6, 4]])
    odd = tf.conv2d(np.ones((1, 5, 5, 1)), k, 2, "SAME").numpy()[0, :, :, 0]
    np.testing.assert_array_equal(odd, [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    # PyTorch-style symmetric padding 1 on the even image reads the other corner.
    sym = F.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), stride=2, padding=1).numpy()[0, 0]
    np.testing.assert_array_equal(sym, [[4, 6], [6, 9]])


# ----- plain-loop references (NHWC, HWIO) ----------------------------------------------------
def pad_nhwc(x, pads):
    (t, b), (l, r) = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))


def conv2d_ref(x, f, strides, pads, dilations):
    """out[n, oh, ow, g*Og + o] = sum_{kh, kw, i} xpad[n, oh*s + kh*d, ow*s + kw*d, g*I + i] f[kh, kw, i, g*Og + o]."""
    (SH, SW), (DH, DW) = strides, dilations
    N, H, W, C = x.shape
    KH, KW, I, O = f.shape
    G = C // I
    Og = O // G
    xp = pad_nhwc(x, pads)
    OH = (xp.shape[1] - (KH - 1) * DH - 1) // SH + 1
    OW = (xp.shape[2] - (KW - 1) * DW - 1) // SW + 1
    out = np.zeros((N, OH, OW, O))
    for oh in range(OH):
        for ow in range(OW):
            for kh in range(KH):
                for kw in range(KW):
                    pix = xp[:, oh * SH + kh * DH, ow * SW + kw * DW, :]  # (N, C)
                    for g in range(G):
                        out[:, oh, ow, g * Og : (g + 1) * Og] += (
                            pix[:, g * I : (g + 1) * I] @ f[kh, kw, :, g * Og : (g + 1) * Og]
                        )
    return out


def depthwise_ref(x, f, strides, pads, dilations):
    """out[n, oh, ow, c*M + m] = sum_{kh, kw} xpad[n, oh*s + kh*d, ow*s + kw*d, c] f[kh, kw, c, m]."""
    (SH, SW), (DH, DW) = strides, dilations
    N, H, W, C = x.shape
    KH, KW, _, M = f.shape
    xp = pad_nhwc(x, pads)
    OH = (xp.shape[1] - (KH - 1) * DH - 1) // SH + 1
    OW = (xp.shape[2] - (KW - 1) * DW - 1) // SW + 1
    out = np.zeros((N, OH, OW, C * M))
    for oh in range(OH):
        for ow in range(OW):
            for c in range(C):
                for m in range(M):
                    for kh in range(KH):
                        for kw in range(KW):
                            pix = xp[:, oh * SH + kh * DH, ow * SW + kw * DW, c]
                            out[:, oh, ow, c * M + m] += pix * f[kh, kw, c, m]
    return out


def conv2d_transpose_ref(y, f, out_hw, strides, pads, dilations):
    """Scatter: input pixel (i, j) adds f[kh, kw] @ y[n, i, j] at padded position
    (i*s + kh*d, j*s + kw*d); the padding (top/left) is then cut off to out_hw."""
    (SH, SW), (DH, DW) = strides, dilations
    N, H, W, Ci = y.shape
    KH, KW, Co, _ = f.shape
    (t, _), (l, _) = pads
    OH, OW = out_hw
    HP = max((H - 1) * SH + (KH - 1) * DH + 1, t + OH)  # every scatter target, and the crop
    WP = max((W - 1) * SW + (KW - 1) * DW + 1, l + OW)
    canvas = np.zeros((N, HP, WP, Co))
    for i in range(H):
        for j in range(W):
            for kh in range(KH):
                for kw in range(KW):
                    canvas[:, i * SH + kh * DH, j * SW + kw * DW, :] += y[:, i, j, :] @ f[kh, kw].T
    return canvas[:, t : t + OH, l : l + OW, :]


def test_references_agree_with_each_other():
    """The depthwise reference is the grouped reference with groups = C (a check of the checks)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 3))
    f = rng.standard_normal((3, 2, 3, 2))
    pads = ((1, 2), (0, 1))
    grouped = f.reshape(3, 2, 1, 6)
    np.testing.assert_allclose(
        depthwise_ref(x, f, (2, 1), pads, (1, 2)), conv2d_ref(x, grouped, (2, 1), pads, (1, 2)), atol=1e-12
    )


# ----- random configurations -----------------------------------------------------------------
@st.composite
def conv_configs(draw, depthwise=False):
    N = draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if depthwise:
        C, M = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        fshape = (KH, KW, C, M)
    else:
        G, I, Og = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        C = G * I
        fshape = (KH, KW, I, G * Og)
    kind = draw(st.sampled_from(["SAME", "VALID", "explicit"]))
    if kind == "SAME":
        pads = (same_pads(H, KH, SH, DH), same_pads(W, KW, SW, DW))
    elif kind == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    assume(H + sum(pads[0]) >= (KH - 1) * DH + 1 and W + sum(pads[1]) >= (KW - 1) * DW + 1)
    fmt = draw(st.sampled_from(["NHWC", "NCHW"]))
    spell = draw(st.sampled_from(["pair", "four", "int"]))
    seed = draw(st.integers(0, 2**16))
    noncontig = draw(st.booleans())
    return dict(N=N, H=H, W=W, C=C, fshape=fshape, stride=(SH, SW), dilation=(DH, DW), kind=kind,
                pads=pads, fmt=fmt, spell=spell, seed=seed, noncontig=noncontig)


def tf_args(cfg):
    """strides, padding, dilations spelled as TensorFlow accepts them, in data_format order."""
    (SH, SW), (DH, DW), fmt = cfg["stride"], cfg["dilation"], cfg["fmt"]
    spell = cfg["spell"]
    if spell == "int" and (SH != SW or DH != DW):
        spell = "pair"
    if spell == "int":
        strides, dilations = SH, DH
    elif spell == "pair":
        strides, dilations = [SH, SW], [DH, DW]
    else:
        strides = [1, SH, SW, 1] if fmt == "NHWC" else [1, 1, SH, SW]
        dilations = [1, DH, DW, 1] if fmt == "NHWC" else [1, 1, DH, DW]
    if cfg["kind"] == "explicit":
        (t, b), (l, r) = cfg["pads"]
        padding = [[0, 0], [t, b], [l, r], [0, 0]] if fmt == "NHWC" else [[0, 0], [0, 0], [t, b], [l, r]]
    else:
        padding = cfg["kind"]
    return strides, padding, dilations


def make_input(cfg, rng):
    """NHWC data and the same values in cfg's data_format, optionally as a non-contiguous view."""
    x = rng.standard_normal((cfg["N"], cfg["H"], cfg["W"], cfg["C"]))
    xin = x if cfg["fmt"] == "NHWC" else x.transpose(0, 3, 1, 2).copy()
    if cfg["noncontig"]:
        wide = np.zeros(xin.shape[:-1] + (2 * xin.shape[-1],))
        wide[..., ::2] = xin
        xin = wide[..., ::2]
        assert not xin.flags.c_contiguous or xin.shape[-1] == 1
    return x, xin


def to_nhwc(y, fmt):
    y = y.numpy()
    return y if fmt == "NHWC" else y.transpose(0, 2, 3, 1)


@settings(max_examples=150)
@given(conv_configs())
def test_conv2d_matches_loop_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x, xin = make_input(cfg, rng)
    f = rng.standard_normal(cfg["fshape"])
    strides, padding, dilations = tf_args(cfg)
    y = tf.conv2d(xin, f, strides, padding, data_format=cfg["fmt"], dilations=dilations)
    ref = conv2d_ref(x, f, cfg["stride"], cfg["pads"], cfg["dilation"])
    assert isinstance(y, Tensor) and y.dtype == np.float64
    np.testing.assert_allclose(to_nhwc(y, cfg["fmt"]), ref, rtol=1e-10, atol=1e-10)


@settings(max_examples=100)
@given(conv_configs(depthwise=True))
def test_depthwise_conv2d_matches_loop_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x, xin = make_input(cfg, rng)
    f = rng.standard_normal(cfg["fshape"])
    strides, padding, dilations = tf_args(cfg)
    y = tf.depthwise_conv2d(xin, f, strides, padding, data_format=cfg["fmt"], dilations=dilations)
    ref = depthwise_ref(x, f, cfg["stride"], cfg["pads"], cfg["dilation"])
    np.testing.assert_allclose(to_nhwc(y, cfg["fmt"]), ref, rtol=1e-10, atol=1e-10)


@settings(max_examples=60)
@given(
    N=st.integers(1, 2), H=st.integers(1, 12), W=st.integers(1, 12), C=st.integers(1, 3), O=st.integers(1, 3),
    K=st.integers(1, 3), rate=st.integers(1, 4), padding=st.sampled_from(["SAME", "VALID"]), seed=st.integers(0, 999),
)
def test_atrous_conv2d_matches_loop_reference(N, H, W, C, O, K, rate, padding, seed):
    assume(padding == "SAME" or min(H, W) >= (K - 1) * rate + 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C))
    f = rng.standard_normal((K, K, C, O))
    if padding == "SAME":
        pads = (same_pads(H, K, 1, rate), same_pads(W, K, 1, rate))
    else:
        pads = ((0, 0), (0, 0))
    y = tf.atrous_conv2d(x, f, rate, padding)
    ref = conv2d_ref(x, f, (1, 1), pads, (rate, rate))
    assert y.shape == ((N, H, W, O) if padding == "SAME" else (N, H - (K - 1) * rate, W - (K - 1) * rate, O))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)
    # the a trous kernel itself: rate-1 zeros between taps, applied without dilation
    big = np.zeros(((K - 1) * rate + 1, (K - 1) * rate + 1, C, O))
    big[::rate, ::rate] = f
    np.testing.assert_allclose(y.numpy(), tf.conv2d(x, big, 1, padding).numpy(), rtol=1e-10, atol=1e-10)


@st.composite
def transpose_configs(draw):
    """A conv2d (output_shape -> input) of which conv2d_transpose is the adjoint."""
    N, Ci, Co = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    OH, OW = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["SAME", "VALID", "explicit"]))
    if kind == "SAME":
        pads = (same_pads(OH, KH, SH, DH), same_pads(OW, KW, SW, DW))
    elif kind == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    H = (OH + sum(pads[0]) - (KH - 1) * DH - 1) // SH + 1
    W = (OW + sum(pads[1]) - (KW - 1) * DW - 1) // SW + 1
    assume(H >= 1 and W >= 1)
    if kind == "SAME":
        assert (H, W) == (-(-OH // SH), -(-OW // SW))
    return dict(N=N, H=H, W=W, C=Ci, Co=Co, out_hw=(OH, OW), fshape=(KH, KW, Co, Ci), stride=(SH, SW),
                dilation=(DH, DW), kind=kind, pads=pads, fmt=draw(st.sampled_from(["NHWC", "NCHW"])),
                spell=draw(st.sampled_from(["pair", "four", "int"])), seed=draw(st.integers(0, 2**16)),
                noncontig=draw(st.booleans()), short_shape=draw(st.booleans()))


@settings(max_examples=120)
@given(transpose_configs())
def test_conv2d_transpose_scatter_reference_and_adjoint(cfg):
    rng = np.random.default_rng(cfg["seed"])
    y, yin = make_input(cfg, rng)
    f = rng.standard_normal(cfg["fshape"])
    strides, padding, dilations = tf_args(cfg)
    (OH, OW), N, Co, fmt = cfg["out_hw"], cfg["N"], cfg["Co"], cfg["fmt"]
    out_shape = (OH, OW) if cfg["short_shape"] else ([N, OH, OW, Co] if fmt == "NHWC" else [N, Co, OH, OW])
    got = tf.conv2d_transpose(yin, f, out_shape, strides, padding, data_format=fmt, dilations=dilations)
    got = to_nhwc(got, fmt)
    assert got.shape == (N, OH, OW, Co)
    ref = conv2d_transpose_ref(y, f, (OH, OW), cfg["stride"], cfg["pads"], cfg["dilation"])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    # <conv(x), y> == <x, conv_transpose(y)>, conv2d being the loop reference
    x = rng.standard_normal((N, OH, OW, Co))
    lhs = np.vdot(conv2d_ref(x, f, cfg["stride"], cfg["pads"], cfg["dilation"]), y)
    np.testing.assert_allclose(lhs, np.vdot(x, got), rtol=1e-10, atol=1e-10)


# ----- PyTorch as a second oracle (asymmetric padding by F.pad, then a valid conv) -----------
@settings(max_examples=60)
@given(conv_configs())
def test_conv2d_and_transpose_match_torch(torch, cfg):
    rng = np.random.default_rng(cfg["seed"])
    x, xin = make_input(cfg, rng)
    f = rng.standard_normal(cfg["fshape"])
    strides, padding, dilations = tf_args(cfg)
    (t, b), (l, r) = cfg["pads"]
    G = cfg["C"] // cfg["fshape"][2]

    def tconv(v):
        v = torch.nn.functional.pad(v.permute(0, 3, 1, 2), (l, r, t, b))
        w = torch.from_numpy(f).permute(3, 2, 0, 1)
        out = torch.nn.functional.conv2d(v, w, stride=cfg["stride"], dilation=cfg["dilation"], groups=G)
        return out.permute(0, 2, 3, 1)

    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tconv(xt)
    y = tf.conv2d(xin, f, strides, padding, data_format=cfg["fmt"], dilations=dilations)
    np.testing.assert_allclose(to_nhwc(y, cfg["fmt"]), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    if G > 1:
        return  # conv2d_transpose has no groups, as TensorFlow's
    # TensorFlow defines conv2d_transpose as this conv's input gradient: torch's autograd gives it.
    g = rng.standard_normal(yt.shape)
    (gx,) = torch.autograd.grad(yt, xt, torch.from_numpy(g))
    gin = g if cfg["fmt"] == "NHWC" else g.transpose(0, 3, 1, 2)
    # The conv's filters [KH, KW, I, O] are the transpose's [KH, KW, output_channels, in_channels].
    out = tf.conv2d_transpose(gin, f, x.shape[1:3], strides, padding, data_format=cfg["fmt"], dilations=dilations)
    np.testing.assert_allclose(to_nhwc(out, cfg["fmt"]), gx.numpy(), rtol=1e-10, atol=1e-10)


# ----- Keras/TF-layout kernels through the converters ----------------------------------------
@pytest.mark.parametrize("H, W, K, stride", [(7, 8, 3, 2), (8, 8, 3, 2), (9, 6, 4, 3), (6, 7, 4, 1), (5, 5, 1, 2)])
def test_keras_kernel_through_converters_reproduces_native(H, W, K, stride):
    """A Keras Conv2D kernel (HWIO) used natively: hwio_to_oihw, NCHW input, the SAME (lo, hi)
    padding written out with F.pad, then atrous.functional.conv2d, equals compat.tf.conv2d."""
    rng = np.random.default_rng(H * 100 + W)
    x_nhwc = rng.standard_normal((2, H, W, 3)).astype(np.float32)
    kernel = rng.standard_normal((K, K, 3, 5)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    want = tf.conv2d(x_nhwc, kernel, stride, "SAME").numpy() + bias

    (t, b), (l, r) = same_pads(H, K, stride), same_pads(W, K, stride)
    weight = tf.hwio_to_oihw(kernel)
    assert isinstance(weight, np.ndarray) and weight.shape == (5, 3, K, K) and weight.flags.c_contiguous
    x = F.pad(tf.nhwc_to_nchw(x_nhwc), (l, r, t, b))
    native = tf.nchw_to_nhwc(F.conv2d(x, weight, bias, stride=stride))
    assert native.dtype == np.float32
    np.testing.assert_allclose(native.numpy(), want, rtol=1e-5, atol=1e-5)

    # Loaded into an nn.Conv2d through its state dict; at stride 1 its padding='same' is TF's SAME.
    if stride == 1:
        conv = nn.Conv2d(3, 5, K, padding="same")
        conv.load_state_dict({"weight": weight, "bias": bias})
        out = tf.nchw_to_nhwc(conv(tf.nhwc_to_nchw(x_nhwc)))
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


def test_converters_elementwise_and_round_trips():
    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 4, 5, 6))
    w = tf.hwio_to_oihw(k)
    for h, v, i, o in np.ndindex(*k.shape):
        assert w[o, i, h, v] == k[h, v, i, o]
    np.testing.assert_array_equal(tf.oihw_to_hwio(w), k)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    n = tf.nhwc_to_nchw(x)
    for a, h, v, c in np.ndindex(*x.shape):
        assert n[a, c, h, v] == x[a, h, v, c]
    back = tf.nchw_to_nhwc(n)
    assert back.dtype == np.float32 and back.flags.c_contiguous
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(tf.oihw_to_hwio(tf.hwio_to_oihw(x)), x)
    # Tensors stay Tensors, lists become arrays
    t = tf.hwio_to_oihw(Tensor(k))
    assert isinstance(t, Tensor) and t.shape == (6, 5, 3, 4)
    assert tf.nchw_to_nhwc(np.zeros((1, 2, 3, 4)).tolist()).shape == (1, 3, 4, 2)


def test_converters_backpropagate():
    rng = np.random.default_rng(1)
    check_gradients(lambda k: tf.hwio_to_oihw(k) * 1.0, rng.standard_normal((2, 3, 2, 4)))
    check_gradients(lambda x: tf.nchw_to_nhwc(tf.nhwc_to_nchw(x) * 2.0), rng.standard_normal((2, 3, 2, 4)))


def test_float32_preserved_and_grads_reach_inputs():
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((2, 6, 5, 4)).astype(np.float32), requires_grad=True)
    f = Tensor(rng.standard_normal((3, 3, 2, 6)).astype(np.float32), requires_grad=True)
    y = tf.conv2d(x, f, 2, "SAME")
    assert y.dtype == np.float32 and y.shape == (2, 3, 3, 6)
    y.sum().backward()
    assert x.grad.shape == x.shape and f.grad.shape == f.shape and x.grad.dtype == np.float32
    # the same gradient through the float64 loop reference's adjoint: sum of outputs' grads
    pads = (same_pads(6, 3, 2), same_pads(5, 3, 2))
    ref = conv2d_ref(x.numpy().astype(np.float64), f.numpy().astype(np.float64), (2, 2), pads, (1, 1))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_extra_batch_dims():
    """TensorFlow's conv2d takes batch_shape + [H, W, C]: leading dims fold into the batch."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 5, 2))
    f = rng.standard_normal((3, 3, 2, 4))
    y = tf.conv2d(x, f, 2, "SAME")
    assert y.shape == (2, 3, 3, 3, 4)
    np.testing.assert_allclose(y.numpy()[1, 2], tf.conv2d(x[1, 2][None], f, 2, "SAME").numpy()[0], atol=1e-12)


# ----- finite differences (float64) ----------------------------------------------------------
def test_gradients_conv2d():
    rng = np.random.default_rng(5)
    x, f = rng.standard_normal((2, 5, 4, 4)), rng.standard_normal((3, 2, 2, 4))  # 2 groups
    check_gradients(lambda x, f: tf.conv2d(x, f, [2, 1], "SAME", dilations=[1, 2]), x, f)
    xc = rng.standard_normal((2, 3, 4, 5))
    fc = rng.standard_normal((2, 3, 3, 2))
    explicit = [[0, 0], [0, 0], [2, 0], [1, 3]]
    check_gradients(lambda x, f: tf.conv2d(x, f, [1, 1, 2, 2], explicit, data_format="NCHW"), xc, fc)


def test_gradients_depthwise_and_atrous():
    rng = np.random.default_rng(6)
    x, f = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((3, 2, 3, 2))
    check_gradients(lambda x, f: tf.depthwise_conv2d(x, f, [1, 2, 2, 1], "SAME"), x, f)
    xa, fa = rng.standard_normal((1, 7, 6, 2)), rng.standard_normal((3, 3, 2, 2))
    check_gradients(lambda x, f: tf.atrous_conv2d(x, f, 2, "SAME"), xa, fa)


def test_gradients_conv2d_transpose():
    rng = np.random.default_rng(7)
    y, f = rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((3, 3, 4, 2))
    check_gradients(lambda y, f: tf.conv2d_transpose(y, f, [2, 6, 5, 4], 2, "SAME"), y, f)
    yc, fc = rng.standard_normal((1, 2, 2, 3)), rng.standard_normal((2, 3, 3, 2))
    check_gradients(lambda y, f: tf.conv2d_transpose(y, f, [1, 3, 4, 7], [1, 1, 2, 1], "VALID", data_format="NCHW",
                                                     dilations=[1, 1, 1, 2]), yc, fc)


# ----- errors name the op, the argument and the shapes ---------------------------------------
X1, K1 = np.ones((1, 5, 5, 1)), np.ones((3, 3, 1, 1))
EXPLICIT = [[0, 0], [1, 1], [1, 1], [0, 0]]

@pytest.mark.parametrize("call, exc, match", [
    (lambda: tf.conv2d(np.ones((1, 5, 5, 6)), np.ones((3, 3, 4, 2)), 1, "SAME"), ValueError,
     r"conv2d: input depth 6 is not a multiple of filters.shape\[2\]=4 .*\(1, 5, 5, 6\).*\(3, 3, 4, 2\)"),
    (lambda: tf.conv2d(np.ones((1, 5, 5, 6)), np.ones((3, 3, 3, 5)), 1, "SAME"), ValueError,
     r"conv2d: filters.shape\[3\]=5 \(out_channels\) is not a multiple of the number of groups 2"),
    (lambda: tf.conv2d(np.ones((1, 5, 5)), K1, 1, "SAME"), ValueError, r"conv2d: input must be at least 4-D"),
    (lambda: tf.conv2d(X1, np.ones((3, 3, 1)), 1, "SAME"), ValueError, r"conv2d: filters must be 4-D"),
    (lambda: tf.conv2d(X1, K1, 1, "same-ish"), ValueError, r"conv2d: padding must be"),
    (lambda: tf.conv2d(X1, K1, 1, "SAME", data_format="NWHC"), ValueError,
     r"conv2d: data_format must be 'NHWC' or 'NCHW'"),
    (lambda: tf.conv2d(X1, K1, [2, 2, 2, 1], "SAME"), ValueError,
     r"conv2d: strides=\[2, 2, 2, 1\] must be 1 in the batch and channel"),
    (lambda: tf.conv2d(X1, K1, [1, 2, 2], "SAME"), ValueError,
     r"conv2d: strides must be an int or a list of 1, 2 or 4 ints"),
    (lambda: tf.conv2d(X1, K1, 0, "SAME"), ValueError, r"conv2d: strides must be >= 1"),
    (lambda: tf.conv2d(X1, K1, 1, "SAME", dilations=1.5), TypeError, r"conv2d: dilations"),
    (lambda: tf.conv2d(np.ones((1, 2, 5, 1)), np.ones((3, 3, 1, 1)), 1, "VALID"), ValueError,
     r"conv2d: computed output size \(0, 3\) is too small"),
    (lambda: tf.conv2d(X1, K1, 1, [[0, 0], [1, 1], [1, 1], [1, 0]]), ValueError,
     r"conv2d: explicit padding .* must be \[0, 0\] in the batch and channel"),
    (lambda: tf.conv2d(X1, K1, 1, [[1, 1], [1, 1]]), ValueError,
     r"conv2d: explicit padding must be 4 \[before, after\] pairs"),
    (lambda: tf.conv2d(X1, K1, 1, [[0, 0], [-1, 1], [1, 1], [0, 0]]), ValueError,
     r"conv2d: explicit padding must be non-negative"),
    (lambda: tf.conv2d(np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 1)), 1, "SAME"), TypeError,
     r"conv2d: input has dtype float32 but filters has dtype float64"),
    (lambda: tf.conv2d(np.ones((1, 5, 5, 1), np.int64), np.ones((3, 3, 1, 1), np.int64), 1, "SAME"), TypeError,
     r"conv2d: input must be a floating-point array"),
    (lambda: tf.atrous_conv2d(X1, K1, 0, "SAME"), ValueError, r"atrous_conv2d: rate must be positive"),
    (lambda: tf.atrous_conv2d(X1, K1, 1.0, "SAME"), TypeError, r"atrous_conv2d: rate must be a positive int"),
    (lambda: tf.atrous_conv2d(X1, K1, 2, EXPLICIT), ValueError,
     r"atrous_conv2d: padding must be 'SAME' or 'VALID'"),
    (lambda: tf.atrous_conv2d(np.ones((1, 5, 5, 2)), np.ones((3, 3, 3, 1)), 2, "SAME"), ValueError,
     r"atrous_conv2d: value depth 2 is not a multiple of filters.shape\[2\]=3"),
    (lambda: tf.depthwise_conv2d(np.ones((1, 5, 5, 2)), np.ones((3, 3, 3, 1)), 1, "SAME"), ValueError,
     r"depthwise_conv2d: input depth 2 must equal filter.shape\[2\]=3"),
    (lambda: tf.conv2d_transpose(np.ones((1, 3, 3, 2)), np.ones((3, 3, 4, 5)), [1, 6, 6, 4], 2), ValueError,
     r"conv2d_transpose: input depth 2 must equal filters.shape\[3\]=5"),
    (lambda: tf.conv2d_transpose(np.ones((1, 3, 3, 2)), np.ones((3, 3, 4, 2)), [1, 6, 6, 3], 2), ValueError,
     r"conv2d_transpose: output_shape depth 3 must equal filters.shape\[2\]=4"),
    (lambda: tf.conv2d_transpose(np.ones((1, 3, 3, 2)), np.ones((3, 3, 4, 2)), [2, 6, 6, 4], 2), ValueError,
     r"conv2d_transpose: output_shape batch 2 must equal the input's batch 1"),
    (lambda: tf.conv2d_transpose(np.ones((1, 3, 3, 2)), np.ones((3, 3, 4, 2)), [1, 7, 4, 4], 2), ValueError,
     r"conv2d_transpose: output_shape spatial size \(7, 4\) does not match the input: .* "
     r"gives \(4, 2\), not the input's \(3, 3\)"),
    (lambda: tf.conv2d_transpose(np.ones((1, 3, 3, 2)), np.ones((3, 3, 4, 2)), [1, 6, 4], 2), ValueError,
     r"conv2d_transpose: output_shape must have 4 entries"),
    (lambda: tf.hwio_to_oihw(np.ones((3, 3, 2))), ValueError, r"hwio_to_oihw: filters must be 4-D \[filter_height"),
    (lambda: tf.nhwc_to_nchw("x"), TypeError, r"nhwc_to_nchw: input must be an array or Tensor"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_conv2d_transpose_every_output_size_of_a_stride():
    """Under stride 2, SAME maps both 5 and 6 rows to 3: each output_shape is honoured."""
    y, f = np.ones((1, 3, 3, 1)), np.ones((1, 1, 1, 1))
    for n in (5, 6):
        out = tf.conv2d_transpose(y, f, [1, n, n, 1], 2, "SAME").numpy()[0, :, :, 0]
        want = np.zeros((n, n))
        want[::2, ::2] = 1  # a 1x1 SAME conv at stride 2 reads rows 0, 2, 4 (no padding)
        np.testing.assert_array_equal(out, want)


def test_docstring_examples():
    failures, tried = doctest.testmod(tf, optionflags=doctest.NORMALIZE_WHITESPACE)[:2]
    assert tried >= 8 and failures == 0
