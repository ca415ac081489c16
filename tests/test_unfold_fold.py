"""unfold (im2col) and fold (col2im): element-by-element loop references, the adjoint identity,
PyTorch on random configurations, finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _blocks(H, W, k, d, p, s):
    (KH, KW), (DH, DW), (PH, PW), (SH, SW) = map(_pair, (k, d, p, s))
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    return (KH, KW), (DH, DW), (PH, PW), (SH, SW), OH, OW


def unfold_ref(x, k, d=1, p=0, s=1):
    """cols[n, (c*KH + kh)*KW + kw, i*OW + j] = x[n, c, i*SH - PH + kh*DH, j*SW - PW + kw*DW] (0 outside)."""
    N, C, H, W = x.shape
    (KH, KW), (DH, DW), (PH, PW), (SH, SW), OH, OW = _blocks(H, W, k, d, p, s)
    cols = np.zeros((N, C * KH * KW, OH * OW))
    for n in range(N):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    for i in range(OH):
                        for j in range(OW):
                            h, v = i * SH - PH + kh * DH, j * SW - PW + kw * DW
                            if 0 <= h < H and 0 <= v < W:
                                cols[n, (c * KH + kh) * KW + kw, i * OW + j] = x[n, c, h, v]
    return cols


def fold_ref(cols, out, k, d=1, p=0, s=1):
    """Each column entry added back to the pixel it was read from; overlaps sum."""
    N = cols.shape[0]
    H, W = out
    (KH, KW), (DH, DW), (PH, PW), (SH, SW), OH, OW = _blocks(H, W, k, d, p, s)
    C = cols.shape[1] // (KH * KW)
    x = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    for i in range(OH):
                        for j in range(OW):
                            h, v = i * SH - PH + kh * DH, j * SW - PW + kw * DW
                            if 0 <= h < H and 0 <= v < W:
                                x[n, c, h, v] += cols[n, (c * KH + kh) * KW + kw, i * OW + j]
    return x


CASES = [  # (N, C, H, W), kernel_size, dilation, padding, stride
    ((2, 3, 5, 5), 3, 1, 0, 1),
    ((2, 2, 6, 7), (2, 3), 1, 1, (2, 1)),
    ((1, 1, 7, 6), (3, 2), (2, 1), (0, 2), 1),
    ((2, 3, 4, 4), 1, 1, 0, 2),
    ((3, 2, 5, 4), 4, 1, 1, 3),
]


@pytest.mark.parametrize("shape, k, d, p, s", CASES)
def test_unfold_and_fold_match_loops(shape, k, d, p, s):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)
    np.testing.assert_array_equal(cols.numpy(), unfold_ref(x, k, d, p, s))
    c = rng.standard_normal(cols.shape)
    back = F.fold(c, shape[2:], k, dilation=d, padding=p, stride=s)
    np.testing.assert_allclose(back.numpy(), fold_ref(c, shape[2:], k, d, p, s), rtol=1e-12, atol=1e-12)
    # fold is the adjoint of unfold: <unfold(x), c> == <x, fold(c)>
    np.testing.assert_allclose((cols.numpy() * c).sum(), (x * back.numpy()).sum(), rtol=1e-10)


@pytest.mark.parametrize("shape, k, d, p, s", CASES[:3])
def test_gradients_finite_differences(shape, k, d, p, s):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    check_gradients(lambda x: F.unfold(x, k, dilation=d, padding=p, stride=s), x)
    c = F.unfold(x, k, dilation=d, padding=p, stride=s).numpy()
    check_gradients(lambda c: F.fold(c, shape[2:], k, dilation=d, padding=p, stride=s), c)


def test_unbatched():
    x = np.random.default_rng(2).standard_normal((2, 4, 5))
    cols = F.unfold(x, 2)
    assert cols.shape == (8, 12)
    np.testing.assert_array_equal(cols.numpy(), unfold_ref(x[None], 2)[0])
    np.testing.assert_allclose(F.fold(cols, (4, 5), 2).numpy(), fold_ref(cols.numpy()[None], (4, 5), 2)[0])


def test_fold_counts_overlaps():
    """Folding columns of ones counts how many windows cover each pixel."""
    counts = F.fold(np.ones((1, 9, 9), np.float32), (5, 5), 3).numpy()[0, 0]
    expected = np.array([1, 2, 3, 2, 1], np.float32)
    np.testing.assert_array_equal(counts, np.outer(expected, expected))


# ----- differential tests against PyTorch ----------------------------------------------------
@st.composite
def configs(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    H = max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]) + draw(st.integers(0, 4))
    W = max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]) + draw(st.integers(0, 4))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W),
                args=dict(kernel_size=k, dilation=d, padding=p, stride=s),
                contiguous=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


def _close(ours, ref, what):
    ref = ref.detach().numpy()
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


@settings(max_examples=50)
@given(configs())
def test_unfold_matches_torch(torch, cfg):
    rng = np.random.default_rng(cfg["seed"])
    N, C, H, W = cfg["shape"]
    big = rng.standard_normal((N, 2 * C, H, W)).astype(np.float32)
    x = big[:, ::2] if not cfg["contiguous"] else np.ascontiguousarray(big[:, :C])
    X = Tensor(x, requires_grad=True)
    y = F.unfold(X, **cfg["args"])
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.unfold(tx, **cfg["args"])
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape)
    _close(y, ty, "output")
    _close(X.grad, tx.grad, "input grad")


@settings(max_examples=50)
@given(configs())
def test_fold_matches_torch(torch, cfg):
    rng = np.random.default_rng(cfg["seed"])
    N, C, H, W = cfg["shape"]
    a = cfg["args"]
    L = F.unfold(np.zeros((1, 1, H, W), np.float32), **a).shape[-1]
    KK = a["kernel_size"][0] * a["kernel_size"][1]
    big = rng.standard_normal((N, C * KK, 2 * L)).astype(np.float32)
    c = big[:, :, ::2] if not cfg["contiguous"] else np.ascontiguousarray(big[:, :, :L])
    Cc = Tensor(c, requires_grad=True)
    y = F.fold(Cc, (H, W), **a)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    tc = torch.tensor(c, requires_grad=True)
    ty = torch.nn.functional.fold(tc, (H, W), **a)
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape)
    _close(y, ty, "output")
    _close(Cc.grad, tc.grad, "input grad")
