"""linear: a loop reference, PyTorch on random shapes, finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients


def linear_ref(x, w, b=None):
    """y[..., o] = b[o] + sum_i x[..., i] * w[o, i]."""
    flat = x.reshape(-1, x.shape[-1])
    y = np.zeros((flat.shape[0], w.shape[0]))
    for r in range(flat.shape[0]):
        for o in range(w.shape[0]):
            y[r, o] = sum(flat[r, i] * w[o, i] for i in range(w.shape[1])) + (0 if b is None else b[o])
    return y.reshape(x.shape[:-1] + (w.shape[0],))


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5), (2, 1, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_loop_reference_and_finite_differences(shape, bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4) if bias else None
    y = F.linear(x, w, b)
    assert y.shape == shape[:-1] + (4,) and y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), linear_ref(x, w, b), rtol=1e-12, atol=1e-12)
    if bias:
        check_gradients(lambda x, w, b: F.linear(x, w, b), x, w, b)
    else:
        check_gradients(lambda x, w: F.linear(x, w), x, w)


def test_float32_preserved():
    y = F.linear(np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.zeros(4, np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), np.full((2, 4), 3, np.float32))


@settings(max_examples=50)
@given(
    st.lists(st.integers(1, 4), min_size=0, max_size=3),
    st.integers(1, 6), st.integers(1, 6), st.booleans(), st.booleans(), st.integers(0, 2**31),
)
def test_linear_matches_torch(torch, lead, fin, fout, bias, contiguous, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(lead) + (fin,)
    big = rng.standard_normal(shape[:-1] + (2 * fin,)).astype(np.float32)
    x = big[..., ::2] if not contiguous else np.ascontiguousarray(big[..., :fin])
    w = rng.standard_normal((fout, fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32) if bias else None
    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    B = Tensor(b, requires_grad=True) if bias else None
    y = F.linear(X, W, B)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(g))
    pairs = [(y, ty), (X.grad, tx.grad), (W.grad, tw.grad)] + ([(B.grad, tb.grad)] if bias else [])
    for ours, ref in pairs:
        ref = ref.detach().numpy()
        assert np.shape(ours) == ref.shape
        np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-5 * (float(np.abs(ref).max()) or 1.0))
