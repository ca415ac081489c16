"""conv_transpose2d: a scatter-loop reference, the adjoint identity with conv2d, PyTorch on random
configurations, and finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Each input pixel (h, v) scatters x * w[c, o, kh, kw] to output pixel
    (h*SH - PH + kh*DH, v*SW - PW + kw*DW) of output channel g*Og + o, where it lands."""
    (SH, SW), (PH, PW), (OPH, OPW), (DH, DW) = map(_pair, (stride, padding, output_padding, dilation))
    N, C, H, W = x.shape
    _, Og, KH, KW = w.shape
    Cg = C // groups
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (W - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    y = np.zeros((N, Og * groups, OH, OW))
    for n in range(N):
        for c in range(C):
            g = c // Cg
            for h in range(H):
                for v in range(W):
                    for o in range(Og):
                        for kh in range(KH):
                            i = h * SH - PH + kh * DH
                            for kw in range(KW):
                                j = v * SW - PW + kw * DW
                                if 0 <= i < OH and 0 <= j < OW:
                                    y[n, g * Og + o, i, j] += x[n, c, h, v] * w[c, o, kh, kw]
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


# (N, C, H, W), (Og, KH, KW), stride, padding, output_padding, groups, dilation
CASES = [
    ((2, 3, 4, 4), (2, 3, 3), 1, 0, 0, 1, 1),
    ((2, 3, 4, 5), (2, 3, 3), 2, 1, 1, 1, 1),
    ((2, 2, 3, 4), (3, 4, 2), (2, 3), (1, 0), (1, 2), 1, 1),
    ((1, 4, 3, 3), (1, 3, 3), 2, 0, 0, 4, 1),  # depthwise
    ((2, 4, 4, 3), (3, 3, 3), 1, 2, 1, 2, 2),  # output_padding < dilation at stride 1
    ((2, 2, 3, 3), (2, 1, 1), 2, 0, 1, 1, 1),  # 1x1 upsampling
    ((1, 1, 2, 3), (1, 2, 4), 3, 1, 2, 1, (2, 1)),
    ((2, 2, 3, 3), (2, 1, 1), 1, 1, 0, 1, 1),  # padding larger than the kernel: output crops
]


@pytest.mark.parametrize("xs, ws, stride, padding, opad, groups, dilation", CASES)
def test_matches_scatter_reference(xs, ws, stride, padding, opad, groups, dilation):
    rng = np.random.default_rng(0)
    Og, KH, KW = ws
    x = rng.standard_normal(xs)
    w = rng.standard_normal((xs[1], Og, KH, KW))
    b = rng.standard_normal(Og * groups)
    args = dict(stride=stride, padding=padding, output_padding=opad, groups=groups, dilation=dilation)
    y = F.conv_transpose2d(x, w, b, **args)
    ref = conv_transpose2d_ref(x, w, b, **args)
    assert y.shape == ref.shape and y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs, ws, stride, padding, opad, groups, dilation", CASES[::2] + CASES[1:2])
def test_gradients_finite_differences(xs, ws, stride, padding, opad, groups, dilation):
    rng = np.random.default_rng(1)
    Og, KH, KW = ws
    x = rng.standard_normal(xs)
    w = rng.standard_normal((xs[1], Og, KH, KW))
    b = rng.standard_normal(Og * groups)
    args = dict(stride=stride, padding=padding, output_padding=opad, groups=groups, dilation=dilation)
    check_gradients(lambda x, w, b: F.conv_transpose2d(x, w, b, **args), x, w, b)


def test_is_the_adjoint_of_conv2d():
    """<conv2d(u, w), v> == <u, conv_transpose2d(v, w)> for the same stride/padding/dilation."""
    rng = np.random.default_rng(2)
    for stride, padding, dilation, groups in [(1, 1, 1, 1), (2, 1, 1, 2), (3, 2, 2, 1), ((2, 1), (0, 2), (1, 2), 2)]:
        u = rng.standard_normal((2, 4, 11, 10))
        w = rng.standard_normal((6, 4 // groups, 3, 3))
        y = F.conv2d(u, w, stride=stride, padding=padding, dilation=dilation, groups=groups).numpy()
        v = rng.standard_normal(y.shape)
        # output_padding recovers the rows the conv's floor division dropped
        s, p, d = _pair(stride), _pair(padding), _pair(dilation)
        opad = tuple(n - ((m - 1) * s[i] - 2 * p[i] + d[i] * (3 - 1) + 1)
                     for i, (n, m) in enumerate(zip(u.shape[2:], y.shape[2:])))
        ut = F.conv_transpose2d(v, w, stride=stride, padding=padding, output_padding=opad,
                                dilation=dilation, groups=groups).numpy()
        assert ut.shape == u.shape
        np.testing.assert_allclose((y * v).sum(), (u * ut).sum(), rtol=1e-10)


def test_unbatched_input():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((2, 3, 3, 3))
    y = F.conv_transpose2d(x, w, stride=2)
    np.testing.assert_allclose(y.numpy(), conv_transpose2d_ref(x[None], w, stride=2)[0], atol=1e-12)


# ----- differential tests against PyTorch ----------------------------------------------------
@st.composite
def configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    K = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    opad = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in range(2))
    H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    # the output must be at least one pixel
    for i, n in enumerate((H, W)):
        if (n - 1) * stride[i] - 2 * padding[i] + dilation[i] * (K[i] - 1) + opad[i] + 1 < 1:
            padding = tuple(0 if j == i else padding[j] for j in range(2))
    return dict(N=draw(st.integers(1, 3)), C=groups * cg, Og=og, H=H, W=W, K=K, groups=groups,
                args=dict(stride=stride, padding=padding, output_padding=opad, groups=groups, dilation=dilation),
                bias=draw(st.booleans()), contiguous=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


def _close(ours, ref, what):
    ref = ref.detach().numpy()
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


@settings(max_examples=90)
@given(configs())
def test_conv_transpose2d_matches_torch(torch, cfg):
    rng = np.random.default_rng(cfg["seed"])
    N, C, H, W = cfg["N"], cfg["C"], cfg["H"], cfg["W"]
    big = rng.standard_normal((N, C, 2 * H, W)).astype(np.float32)
    x = big[:, :, ::2] if not cfg["contiguous"] else np.ascontiguousarray(big[:, :, :H])
    w = rng.standard_normal((C, cfg["Og"]) + cfg["K"]).astype(np.float32)
    b = rng.standard_normal(cfg["Og"] * cfg["groups"]).astype(np.float32) if cfg["bias"] else None
    X, Wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    B = Tensor(b, requires_grad=True) if b is not None else None
    y = F.conv_transpose2d(X, Wt, B, **cfg["args"])
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **cfg["args"])
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape) and y.dtype == np.float32
    _close(y, ty, "output")
    _close(X.grad, tx.grad, "input grad")
    _close(Wt.grad, tw.grad, "weight grad")
    if b is not None:
        _close(B.grad, tb.grad, "bias grad")
