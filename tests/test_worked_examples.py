"""The worked examples that motivate the library, as tests (issue 2, part 5)."""
import numpy as np

import atrous.functional as F
from atrous import Tensor
from atrous.shape import effective_kernel


def test_a_alexnet_conv1_shapes_and_parameter_sharing():
    """227x227x3, 96 filters of 11x11, stride 4, padding 0 -> 55x55x96.

    Sharing one 11x11x3 filter (+1 bias) per output channel costs 34,944 parameters; giving
    every one of the 55*55*96 neurons its own weights would cost 105,705,600.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 227, 227)).astype(np.float32)
    w = rng.standard_normal((96, 3, 11, 11)).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    y = F.conv2d(x, w, b, stride=4, padding=0).numpy()
    assert y.shape == (1, 96, 55, 55)
    assert w.size + b.size == (11 * 11 * 3 + 1) * 96 == 34_944
    assert 55 * 55 * 96 * (11 * 11 * 3 + 1) == 105_705_600
    # every output is the dot product of its filter with its 11x11x3 receptive field
    x64, w64 = x.astype(np.float64), w.astype(np.float64).reshape(96, -1)
    for i in range(55):
        for j in range(55):
            field = x64[0, :, 4 * i : 4 * i + 11, 4 * j : 4 * j + 11].reshape(-1)
            np.testing.assert_allclose(y[0, :, i, j], w64 @ field + b, rtol=1e-4, atol=1e-4)


def test_b_padded_strided_volume_by_hand():
    """5x5x3 input padded by 1 to 7x7x3, two 3x3x3 filters, stride 2 -> 3x3x2, value by value."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(3, 5, 5)).astype(np.float64)
    w = rng.integers(-1, 2, size=(2, 3, 3, 3)).astype(np.float64)
    b = np.array([1.0, 0.0])
    padded = np.zeros((3, 7, 7))
    padded[:, 1:6, 1:6] = x
    expected = np.zeros((2, 3, 3))
    for o in range(2):
        for i in range(3):
            for j in range(3):
                total = b[o]
                for c in range(3):
                    for kh in range(3):
                        for kw in range(3):
                            total += padded[c, 2 * i + kh, 2 * j + kw] * w[o, c, kh, kw]
                expected[o, i, j] = total
    y = F.conv2d(x[None], w, b, stride=2, padding=1).numpy()
    assert y.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(y[0], expected)  # small integers: exact


def test_c_im2col_layout_and_conv_as_one_matrix_product():
    """4x4x3 input, six 3x3x3 filters, stride 1, no padding: a 27x4 column matrix whose rows
    are channel 0's nine kernel positions, then channel 1's, then channel 2's."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 4, 4))
    w = rng.standard_normal((6, 3, 3, 3))
    cols = F.unfold(x, 3).numpy()
    assert cols.shape == (1, 27, 4)
    for c in range(3):
        for kh in range(3):
            for kw in range(3):
                row = c * 9 + kh * 3 + kw
                for i in range(2):
                    for j in range(2):
                        assert cols[0, row, i * 2 + j] == x[0, c, i + kh, j + kw]
    y = F.conv2d(x, w).numpy()
    np.testing.assert_allclose(y.reshape(6, 4), w.reshape(6, 27) @ cols[0], rtol=1e-12, atol=1e-12)


def upsample_filter(w, r):
    """Insert r-1 zeros between the taps of each kernel: (O, C, K, K) -> (O, C, r*(K-1)+1, ...)."""
    O, C, KH, KW = w.shape
    up = np.zeros((O, C, r * (KH - 1) + 1, r * (KW - 1) + 1))
    up[:, :, ::r, ::r] = w
    return up


def test_d_dilation_is_a_zero_upsampled_filter():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 13, 12))
    w = rng.standard_normal((4, 3, 3, 3))
    for r in (1, 2, 3):
        for padding in (0, r):
            atrous_ = F.conv2d(x, w, padding=padding, dilation=r).numpy()
            dense = F.conv2d(x, upsample_filter(w, r), padding=padding).numpy()
            np.testing.assert_allclose(atrous_, dense, rtol=1e-12, atol=1e-12)


def test_d_receptive_field_of_rate_2_is_5x5_with_9_parameters():
    assert effective_kernel(3, 2) == 5
    w = np.random.default_rng(4).standard_normal((1, 1, 3, 3)) + 3.0  # no zero taps
    assert upsample_filter(w, 2).shape[2:] == (5, 5) and np.count_nonzero(upsample_filter(w, 2)) == 9
    # which input pixels does one output pixel see? the nonzero pattern of its input gradient
    x = Tensor(np.zeros((1, 1, 9, 9)), requires_grad=True)
    y = F.conv2d(x, w, dilation=2)
    assert y.shape == (1, 1, 5, 5)
    g = np.zeros(y.shape)
    g[0, 0, 2, 2] = 1.0
    y.backward(g)
    rows, cols = np.nonzero(x.grad[0, 0])
    assert len(rows) == 9
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 6, 2, 6)  # a 5x5 field
    assert set(rows) == {2, 4, 6} and set(cols) == {2, 4, 6}
