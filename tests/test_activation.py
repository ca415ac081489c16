"""Activations, softmax and dropout: loop references, PyTorch on random inputs, finite differences."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients

# ----- helpers ---------------------------------------------------------------------------------


@st.composite
def arrays(draw, min_ndim=1, max_ndim=4):
    """A float32/float64 array, N > 1 when batched, sometimes non-contiguous, sometimes with
    exact zeros and ties (values on a half-integer grid) to hit the kinks of the ReLUs."""
    ndim = draw(st.integers(min_ndim, max_ndim))
    shape = [draw(st.integers(2 if i == 0 and ndim > 1 else 1, 5)) for i in range(ndim)]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    big = [2 * n for n in shape]
    if draw(st.booleans()):
        base = (rng.integers(-6, 7, size=big) / 2).astype(dtype)
    else:
        base = (rng.standard_normal(big) * draw(st.sampled_from([0.5, 2.0, 6.0]))).astype(dtype)
    if draw(st.booleans()):
        x = base[tuple(slice(0, 2 * n, 2) for n in shape)]  # strided view
    else:
        x = np.ascontiguousarray(base[tuple(slice(0, n) for n in shape)])
    assert x.shape == tuple(shape)
    return x, rng


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def run_both(torch, ours, theirs, x, rng, extra=(), atol32=1e-6):
    """Forward and input gradients of ours(x, *extra) and theirs(tx, *textra) for one random g."""
    xt = [Tensor(x.copy(), requires_grad=True)] + [Tensor(e.copy(), requires_grad=True) for e in extra]
    tt = [torch.from_numpy(x.copy()).requires_grad_()] + [
        torch.from_numpy(e.copy()).requires_grad_() for e in extra
    ]
    out = ours(*xt)
    ref = theirs(*tt)
    g = rng.standard_normal(ref.shape).astype(x.dtype)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    assert out.dtype == x.dtype
    t = tol(x.dtype) if x.dtype == np.float64 else dict(rtol=1e-5, atol=atol32)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **t)
    for a, b in zip(xt, tt):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **t)


def loop_map(f, x):
    """Apply a scalar Python function to every element, the plainest possible reference."""
    out = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        out[idx] = f(float(x[idx]))
    return out


# ----- plain references --------------------------------------------------------------------------

SCALAR_REFS = {
    "relu": (F.relu, lambda v: v if v > 0 else 0.0),
    "relu6": (F.relu6, lambda v: min(max(v, 0.0), 6.0)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda v: v if v > 0 else 0.2 * v),
    "elu": (lambda x: F.elu(x, 1.5), lambda v: v if v > 0 else 1.5 * (math.exp(v) - 1)),
    "tanh": (F.tanh, math.tanh),
    "sigmoid": (F.sigmoid, lambda v: 1 / (1 + math.exp(-v))),
    "silu": (F.silu, lambda v: v / (1 + math.exp(-v))),
    "gelu": (F.gelu, lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))),
    "gelu_tanh": (
        lambda x: F.gelu(x, approximate="tanh"),
        lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
    ),
}


@pytest.mark.parametrize("name", sorted(SCALAR_REFS))
def test_elementwise_matches_loop_reference(name, rng):
    ours, ref = SCALAR_REFS[name]
    x = np.concatenate([rng.standard_normal(40) * 4, [0.0, -30.0, 30.0, 7.0]]).reshape(4, 11)
    np.testing.assert_allclose(ours(x).numpy(), loop_map(ref, x), rtol=1e-12, atol=1e-14)
    out32 = ours(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.numpy(), loop_map(ref, x), rtol=2e-6, atol=1e-6)


def test_prelu_matches_loop_reference(rng):
    x = rng.standard_normal((3, 4, 2, 5))
    w = rng.standard_normal(4)
    out = F.prelu(x, w).numpy()
    for n, c, h, q in np.ndindex(x.shape):
        v = x[n, c, h, q]
        assert out[n, c, h, q] == (v if v > 0 else w[c] * v)
    np.testing.assert_array_equal(F.prelu(x, w[:1]).numpy(), np.where(x > 0, x, w[0] * x))


def test_softmax_and_log_softmax_match_loop_reference(rng):
    x = rng.standard_normal((3, 5, 4))
    for dim in (0, 1, 2, -1):
        ax = dim % 3
        sm, lsm = np.empty_like(x), np.empty_like(x)
        moved = np.moveaxis(x, ax, -1)
        for idx in np.ndindex(moved.shape[:-1]):
            row = [float(v) for v in moved[idx]]
            z = sum(math.exp(v) for v in row)
            np.moveaxis(sm, ax, -1)[idx] = [math.exp(v) / z for v in row]
            np.moveaxis(lsm, ax, -1)[idx] = [v - math.log(z) for v in row]
        np.testing.assert_allclose(F.softmax(x, dim).numpy(), sm, rtol=1e-12)
        np.testing.assert_allclose(F.log_softmax(x, dim).numpy(), lsm, rtol=1e-12)


def test_log_softmax_is_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4 - 1, 1e4 - 2]], np.float32)
    out = F.log_softmax(Tensor(x, requires_grad=True), dim=1)
    assert np.all(np.isfinite(out.numpy()))
    np.testing.assert_allclose(out.numpy()[0], [0.0, -1e4, -2e4], rtol=1e-6)
    lse = math.log(1 + math.exp(-1) + math.exp(-2))
    np.testing.assert_allclose(out.numpy()[1], [-lse, -1 - lse, -2 - lse], rtol=1e-5)
    sm = F.softmax(x, dim=1).numpy()
    assert np.all(np.isfinite(sm)) and sm[0, 0] == 1.0
    out.sum().backward()
    x_t = Tensor(x, requires_grad=True)
    F.log_softmax(x_t, dim=1).sum().backward()
    assert np.all(np.isfinite(x_t.grad))


# ----- differential tests against PyTorch -------------------------------------------------------

TORCH_ELEMENTWISE = {
    "relu": (F.relu, lambda tF, t: tF.relu(t)),
    "relu6": (F.relu6, lambda tF, t: tF.relu6(t)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda tF, t: tF.leaky_relu(t, 0.1)),
    "leaky_relu_default": (F.leaky_relu, lambda tF, t: tF.leaky_relu(t)),
    "elu": (lambda x: F.elu(x, 0.7), lambda tF, t: tF.elu(t, 0.7)),
    "tanh": (F.tanh, lambda tF, t: tF.tanh(t)),
    "sigmoid": (F.sigmoid, lambda tF, t: tF.sigmoid(t)),
    "silu": (F.silu, lambda tF, t: tF.silu(t)),
    "gelu": (F.gelu, lambda tF, t: tF.gelu(t)),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda tF, t: tF.gelu(t, approximate="tanh")),
}


@pytest.mark.parametrize("name", sorted(TORCH_ELEMENTWISE))
def test_elementwise_matches_torch(torch, name):
    ours, theirs = TORCH_ELEMENTWISE[name]
    tF = torch.nn.functional

    @settings(max_examples=100)
    @given(arrays())
    def check(case):
        x, rng = case
        # torch's float32 tanh-GELU loses ~1e-6 absolute to cancellation in 1 + tanh(u) -> 0
        run_both(torch, ours, lambda t: theirs(tF, t), x, rng, atol32=4e-6 if name == "gelu_tanh" else 1e-6)

    check()


@settings(max_examples=100)
@given(arrays(min_ndim=1, max_ndim=4), st.booleans())
def test_prelu_matches_torch(torch, case, per_channel):
    x, rng = case
    C = x.shape[1] if x.ndim >= 2 else 1
    w = (rng.standard_normal(C if per_channel else 1) * 0.5).astype(x.dtype)
    run_both(torch, F.prelu, torch.nn.functional.prelu, x, rng, extra=(w,))


@settings(max_examples=100)
@given(arrays(), st.data())
def test_softmax_matches_torch(torch, case, data):
    x, rng = case
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    run_both(torch, lambda t: F.softmax(t, dim), lambda t: torch.softmax(t, dim), x, rng)


@settings(max_examples=100)
@given(arrays(), st.data(), st.sampled_from([1.0, 100.0, 1e4]))
def test_log_softmax_matches_torch(torch, case, data, scale):
    x, rng = case
    x = x * x.dtype.type(scale)
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    ours, ref = lambda t: F.log_softmax(t, dim), lambda t: torch.log_softmax(t, dim)
    if scale == 1.0:
        run_both(torch, ours, ref, x, rng)
    else:  # absolute errors grow with the logits' magnitude; compare relative to it
        out = ours(x).numpy()
        np.testing.assert_allclose(out, ref(torch.from_numpy(x.copy())).numpy(), rtol=1e-5, atol=1e-6 * scale)


# ----- finite differences (float64) ------------------------------------------------------------


def _away_from_kinks(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.3, x)  # central differences straddling a kink are wrong


@pytest.mark.parametrize(
    "fn",
    [
        F.relu,
        F.relu6,
        lambda x: F.leaky_relu(x, 0.3),
        lambda x: F.elu(x, 1.3),
        F.tanh,
        F.sigmoid,
        F.silu,
        F.gelu,
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: F.softmax(x, 1),
        lambda x: F.log_softmax(x, 0),
        lambda x: F.softmax(x, -1),
    ],
)
def test_gradcheck_unary(fn, rng):
    check_gradients(fn, _away_from_kinks(rng, (3, 4, 2)) * 3)


@pytest.mark.parametrize("nw", [1, 4])
def test_gradcheck_prelu(rng, nw):
    check_gradients(F.prelu, _away_from_kinks(rng, (2, 4, 3)), rng.standard_normal(nw))


def test_gradcheck_dropout_is_mask_times_scale(rng):
    atrous.manual_seed(3)
    x = Tensor(rng.standard_normal((4, 6)), requires_grad=True)
    out = F.dropout(x, p=0.25)
    g = rng.standard_normal((4, 6))
    out.backward(g)
    mask = out.numpy() / x.numpy()
    np.testing.assert_allclose(x.grad, g * mask)

    def reseeded_dropout(t):  # the same mask on every evaluation
        atrous.manual_seed(3)
        return F.dropout(t, 0.25)

    check_gradients(reseeded_dropout, x.numpy())


# ----- dropout -------------------------------------------------------------------------------------


def test_dropout_is_reproducible_with_manual_seed():
    x = np.ones((64, 64), np.float32)
    atrous.manual_seed(123)
    a = F.dropout(x, 0.3).numpy()
    b = F.dropout(x, 0.3).numpy()
    atrous.manual_seed(123)
    c = F.dropout(x, 0.3).numpy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_scaling_and_keep_fraction(p, dtype):
    atrous.manual_seed(0)
    x = np.full((200, 500), 2.0, dtype)
    out = F.dropout(x, p).numpy()
    assert out.dtype == dtype
    kept = out != 0
    # Kept elements are scaled by exactly 1/(1-p), in the input's precision.
    np.testing.assert_allclose(out[kept], dtype(2.0) * dtype(1 / (1 - p)), rtol=1e-6)
    frac, n = kept.mean(), x.size
    assert abs(frac - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)


def test_dropout_identity_and_edges(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = Tensor(x, requires_grad=True)
    assert F.dropout(t, 0.5, training=False) is t
    assert F.dropout(t, 0.0) is t
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False).numpy(), x)
    z = F.dropout(t, 1.0)
    np.testing.assert_array_equal(z.numpy(), np.zeros_like(x))
    z.sum().backward()
    np.testing.assert_array_equal(t.grad, np.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(x, bad)
    with pytest.raises(TypeError, match="dropout"):
        F.dropout(np.ones(3, np.int64), 0.5)


# ----- errors --------------------------------------------------------------------------------------


def test_errors_name_the_op():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"prelu: weight has 2 elements but must have 1 or C=3"):
        F.prelu(x, np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"prelu: input has dtype float32 but weight has dtype float64"):
        F.prelu(x, np.ones(3))
    with pytest.raises(ValueError, match=r"softmax: dim 3 is out of range for a 3-D input"):
        F.softmax(x, 3)
    with pytest.raises(ValueError, match=r"log_softmax: dim -4"):
        F.log_softmax(x, -4)
    with pytest.raises(TypeError, match=r"relu: input must be a floating-point array"):
        F.relu(np.ones(3, np.int32))
    with pytest.raises(ValueError, match="gelu: approximate"):
        F.gelu(x, approximate="fast")


def test_softmax_implicit_dim_warns_like_torch():
    x = np.zeros((2, 3), np.float32)
    with pytest.warns(UserWarning, match="implicit dimension"):
        out = F.softmax(x)
    np.testing.assert_allclose(out.numpy(), np.full((2, 3), 1 / 3), rtol=1e-6)


def test_softmax_dtype_argument_casts_first():
    out = F.softmax(np.zeros((2, 2), np.float32), 1, dtype=np.float64)
    assert out.dtype == np.float64
