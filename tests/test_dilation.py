"""dilate_kernel: a loop reference, the identity conv2d(x, w, dilation=r) ==
conv2d(x, dilate_kernel(w, r)), PyTorch's dilated convolution, and finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.functional as F
from atrous import Tensor
from gradcheck import check_gradients


def dilate_loop(w, rh, rw):
    """Plain loops: tap (i, j) goes to (i*rh, j*rw) of a zero kernel."""
    O, C, KH, KW = w.shape
    out = np.zeros((O, C, rh * (KH - 1) + 1, rw * (KW - 1) + 1), w.dtype)
    for o in range(O):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    out[o, c, i * rh, j * rw] = w[o, c, i, j]
    return out


@pytest.mark.parametrize("rate", [1, 2, 3, 4, (2, 3), (1, 4)])
@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (3, 3), (4, 5)])
def test_matches_loop_reference(rng, rate, kernel):
    w = rng.standard_normal((3, 2) + kernel).astype(np.float32)
    rh, rw = (rate, rate) if isinstance(rate, int) else rate
    got = F.dilate_kernel(w, rate)
    assert isinstance(got, Tensor) and got.dtype == np.float32
    np.testing.assert_array_equal(got.numpy(), dilate_loop(w, rh, rw))


def test_two_dimensional_kernel_and_float64():
    w = np.arange(1.0, 5.0).reshape(2, 2)
    got = F.dilate_kernel(w, 3).numpy()
    assert got.dtype == np.float64 and got.shape == (4, 4)
    assert got[0, 0] == 1 and got[0, 3] == 2 and got[3, 0] == 3 and got[3, 3] == 4
    assert np.count_nonzero(got) == 4


@settings(max_examples=40)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 2),
       st.integers(0, 3), st.sampled_from([1, 2]), st.integers(0, 2**16))
def test_dilated_conv_equals_conv_with_dilated_kernel(rate, kh, kw, stride, padding, groups, seed):
    rng = np.random.default_rng(seed)
    N, C, O = 2, 2 * groups, 2 * groups
    H = W = rate * (max(kh, kw) - 1) + 4
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C // groups, kh, kw))
    b = rng.standard_normal(O)
    direct = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=rate, groups=groups)
    holes = F.conv2d(x, F.dilate_kernel(w, rate), b, stride=stride, padding=padding, groups=groups)
    np.testing.assert_allclose(holes.numpy(), direct.numpy(), rtol=1e-12, atol=1e-12)


@settings(max_examples=25)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_conv_with_dilated_kernel_matches_torch_dilated_conv(torch, rate, k, stride, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 2, 13, 11)).astype(np.float32)
    w = rng.standard_normal((4, 2, k, k + 1)).astype(np.float32)
    # padding = rate keeps the dilated kernel (rate*k + 1 wide) inside the padded 11 + 2*rate.
    ours = F.conv2d(x, F.dilate_kernel(w, rate), stride=stride, padding=rate)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride,
                                     padding=rate, dilation=rate)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


def test_gradient_finite_differences(rng):
    w = rng.standard_normal((2, 3, 3, 2))
    check_gradients(lambda t: F.dilate_kernel(t, (2, 3)), w)


def test_weight_gradient_through_the_holes_equals_dilated_conv_gradient(rng):
    x = rng.standard_normal((2, 3, 12, 12))
    w1 = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    w2 = Tensor(w1.numpy().copy(), requires_grad=True)
    g = rng.standard_normal((2, 4, 6, 6))
    F.conv2d(x, w1, dilation=3).backward(g)
    F.conv2d(x, F.dilate_kernel(w2, 3)).backward(g)
    np.testing.assert_allclose(w2.grad, w1.grad, rtol=1e-10)


def test_backward_does_not_alias_the_incoming_gradient(rng):
    w = Tensor(rng.standard_normal((1, 1, 2, 2)), requires_grad=True)
    g = np.ones((1, 1, 3, 3))
    F.dilate_kernel(w, 2).backward(g)
    w.grad[...] = 7
    assert (g == 1).all()


def test_errors_name_the_op_and_the_values():
    with pytest.raises(ValueError, match=r"dilate_kernel: rate must be >= 1.*\(0, 0\)"):
        F.dilate_kernel(np.ones((3, 3)), 0)
    with pytest.raises(ValueError, match=r"dilate_kernel: weight must have at least 2 dimensions.*\(3,\)"):
        F.dilate_kernel(np.ones(3), 2)
    with pytest.raises(TypeError, match="dilate_kernel: weight must be an array or Tensor"):
        F.dilate_kernel("kernel", 2)
    with pytest.raises(TypeError, match="rate"):
        F.dilate_kernel(np.ones((3, 3)), 1.5)
