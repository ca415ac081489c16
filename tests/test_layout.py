"""Channels-innermost memory layouts (``atrous.layout``): which arrays have one, the (M, C) matrix
view and its inverse, blocked column sums against float64, batch norm on such inputs against
the same values in NCHW (and the layout kept), and a CIFAR-style block whose convolutions
return channels-innermost outputs against PyTorch, forward and backward."""
import numpy as np
import pytest

import atrous.functional as F
from atrous import Tensor, layout
from atrous.kernels import algorithms


def in_memory_order(x, order):
    """x's values in an array whose memory runs in axis ``order`` (NCHW shape, other strides)."""
    inverse = sorted(range(x.ndim), key=order.__getitem__)
    return np.ascontiguousarray(x.transpose(order)).transpose(inverse)


@pytest.mark.parametrize("order", [(0, 2, 3, 1), (2, 0, 3, 1), (3, 2, 0, 1)])
def test_channels_innermost_layouts_are_found_and_viewed_without_copies(rng, order):
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    a = in_memory_order(x, order)
    assert layout.channels_last_order(a) == order
    m = layout.channel_matrix(a, order)
    assert m.shape == (3 * 5 * 6, 4) and np.shares_memory(m, a)
    np.testing.assert_array_equal(m, x.transpose(order).reshape(-1, 4))
    back = layout.from_channel_matrix(m, a.shape, order)
    np.testing.assert_array_equal(back, x)
    assert back.strides == a.strides


def test_other_layouts_are_not_channels_innermost(rng):
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    assert layout.channels_last_order(x) is None  # NCHW
    nhwc = in_memory_order(x, (0, 2, 3, 1))
    assert layout.channels_last_order(nhwc[:, :, ::2]) is None  # gaps between rows
    assert layout.channels_last_order(nhwc[:, :3]) is None  # some channels only: gaps
    assert layout.channels_last_order(in_memory_order(x, (0, 2, 1, 3))) is None  # channels not innermost
    assert layout.channels_last_order(np.zeros((2, 1, 3, 3), np.float32)) is None  # one channel
    assert layout.channels_last_order(np.zeros((5, 3), np.float32)) is None  # (N, C)


@pytest.mark.parametrize("M, C", [(1, 3), (127, 5), (128, 2), (32768 + 77, 16)])
def test_column_sums_and_dots_against_float64(rng, M, C):
    a = (rng.standard_normal((M, C)) + 3).astype(np.float32)
    b = rng.standard_normal((M, C)).astype(np.float32)
    sums, dots = a.astype(np.float64).sum(0), (a.astype(np.float64) * b).sum(0)
    np.testing.assert_allclose(layout.column_sums(a), sums, rtol=2e-6)
    np.testing.assert_allclose(layout.column_dots(a, b), dots, rtol=0, atol=2e-6 * np.abs(a * b).sum(0).max())


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("order", [(0, 2, 3, 1), (2, 0, 3, 1)])
def test_batch_norm_on_channels_innermost_input_equals_nchw_and_keeps_the_layout(rng, training, order):
    x = rng.standard_normal((4, 6, 5, 7)).astype(np.float32)
    w, b = rng.random(6).astype(np.float32) + 0.5, rng.standard_normal(6).astype(np.float32)
    rm, rv = rng.standard_normal(6).astype(np.float32), rng.random(6).astype(np.float32) + 0.5
    gy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for data, grad in ((x, gy), (in_memory_order(x, order), in_memory_order(gy, order)), (in_memory_order(x, order), gy)):
        X, W, B = Tensor(data, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
        running = (rm.copy(), rv.copy())
        y = F.batch_norm(X, *running, W, B, training=training)
        y.backward(grad)
        results.append((y.data, X.grad, W.grad, B.grad) + running)
        if data is not x:
            assert y.data.strides == data.strides  # the output keeps the input's layout
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * max(1.0, np.abs(want).max()))


def test_fast_convolutions_return_channels_innermost_outputs(rng):
    x = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    pad = ((1, 1), (1, 1))
    mec = algorithms.ALGORITHMS["mec"].forward(x, w, (1, 1), pad, (1, 1), 1)
    nhwc = algorithms.ALGORITHMS["gemm_nhwc"].forward(x, w, (1, 1), pad, (1, 1), 1)
    assert layout.channels_last_order(mec) == (2, 0, 3, 1)  # rows (oh, n, ow)
    assert layout.channels_last_order(nhwc) == (0, 2, 3, 1)  # rows (n, oh, ow)
    ref = algorithms.ALGORITHMS["gemm"].forward(x, w, (1, 1), pad, (1, 1), 1)
    assert ref.flags.c_contiguous
    for y in (mec, nhwc):
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_cifar_block_with_channels_innermost_activations_matches_torch(torch, rng):
    """conv (MEC) -> BN -> ReLU -> conv (MEC) -> BN, + shortcut, ReLU; then a strided conv
    (channels-last GEMM) and a 1x1: every activation between them is channels-innermost."""
    x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    ws = [rng.standard_normal(s).astype(np.float32) * 0.2 for s in ((16, 16, 3, 3), (16, 16, 3, 3), (64, 16, 3, 3), (8, 64, 1, 1))]
    gammas = [rng.random(c).astype(np.float32) + 0.5 for c in (16, 16, 64)]

    def forward(conv, bn, relu, xt, wt, gt):
        h = relu(bn(conv(xt, wt[0], padding=1), gt[0]))
        h = relu(bn(conv(h, wt[1], padding=1), gt[1]) + xt)
        h = relu(bn(conv(h, wt[2], stride=2, padding=1), gt[2]))
        return conv(h, wt[3])

    assert algorithms.heuristic("forward", x.shape, ws[0].shape, (1, 1), ((1, 1), (1, 1)), (1, 1), 1) == "mec"
    assert algorithms.heuristic("forward", x.shape, ws[2].shape, (2, 2), ((1, 1), (1, 1)), (1, 1), 1) == "gemm_nhwc"
    X, Ws = Tensor(x, requires_grad=True), [Tensor(w, requires_grad=True) for w in ws]
    h = F.relu(F.batch_norm(F.conv2d(X, Ws[0], padding=1), None, None, training=True))
    assert layout.channels_last_order(h.data) == (2, 0, 3, 1)  # conv2d, BN and ReLU kept MEC's layout
    y = forward(F.conv2d, lambda h, g: F.batch_norm(h, None, None, g, None, training=True), F.relu, X, Ws, gammas)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    tx, tws = torch.tensor(x, requires_grad=True), [torch.tensor(w, requires_grad=True) for w in ws]
    tg = [torch.from_numpy(g) for g in gammas]
    ty = forward(torch.nn.functional.conv2d,
                 lambda h, g: torch.nn.functional.batch_norm(h, None, None, g, None, training=True), torch.relu, tx, tws, tg)
    ty.backward(torch.from_numpy(gy))
    for got, want in [(y.data, ty), (X.grad, tx.grad)] + [(W.grad, tw.grad) for W, tw in zip(Ws, tws)]:
        want = want.detach().numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("order", [(0, 2, 3, 1), (2, 0, 3, 1)])
def test_pointwise_convolution_of_channels_innermost_input_is_one_gemm_and_exact(rng, stride, order):
    """kernels.pointwise against the NCHW engine on the same values (float64, so to 1e-12),
    through conv_gemm's entry points; outputs and the input gradient keep the layout."""
    from atrous.kernels import conv_gemm, pointwise

    x = rng.standard_normal((3, 8, 7, 6))
    w = rng.standard_normal((5, 8, 1, 1))
    args = (stride, ((0, 0), (0, 0)), (1, 1), 1)
    ref_y = conv_gemm.forward(x, w, *args, algorithm="gemm")
    gy = rng.standard_normal(ref_y.shape)
    ref_gw = conv_gemm.weight_grad(x, gy, (1, 1), *args, algorithm="gemm")
    ref_gx = conv_gemm.input_grad(gy, w, x.shape[2:], *args, algorithm="gemm")
    xl, gl = in_memory_order(x, order), in_memory_order(gy, order)
    assert pointwise.applies(xl, (1, 1), args[1], 1) and not pointwise.applies(x, (1, 1), args[1], 1)
    y = conv_gemm.forward(xl, w, *args, algorithm="gemm")
    gx = conv_gemm.input_grad(gl, w, x.shape[2:], *args, algorithm="gemm")
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_gemm.weight_grad(xl, gl, (1, 1), *args, algorithm="gemm"), ref_gw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_gemm.weight_grad(xl, gy, (1, 1), *args, algorithm="gemm"), ref_gw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-12, atol=1e-12)
    assert layout.channels_last_order(y) == order and layout.channels_last_order(gx) == order


@pytest.mark.parametrize("order", [None, (0, 2, 3, 1), (2, 0, 3, 1)])
def test_channel_sums_and_bias_add_in_any_layout(rng, order):
    x = rng.standard_normal((3, 16, 5, 7)).astype(np.float32)
    v = rng.standard_normal(16).astype(np.float32)
    a = x.copy() if order is None else in_memory_order(x, order)
    np.testing.assert_allclose(layout.channel_sums(a), x.astype(np.float64).sum((0, 2, 3)), rtol=0, atol=1e-5)
    strides = a.strides
    assert layout.add_per_channel_(a, v) is a and a.strides == strides
    np.testing.assert_array_equal(a, x + v.reshape(1, -1, 1, 1))
    y = rng.standard_normal((2, 3, 4)).astype(np.float32)  # (N, C, L)
    np.testing.assert_array_equal(layout.add_per_channel_(y.copy(), v[:3]), y + v[:3].reshape(1, 3, 1))


def test_heuristic_keeps_channels_innermost_inputs_on_the_channels_last_engine(rng):
    pad = ((1, 1), (1, 1))  # dilated 3x3 with padding 1: neither Winograd nor its phases
    h = algorithms.heuristic
    for op in algorithms.OPS:
        assert h(op, (8, 64, 56, 56), (64, 64, 3, 3), (1, 1), pad, (2, 2), 1) == "gemm"
        assert h(op, (8, 64, 56, 56), (64, 64, 3, 3), (1, 1), pad, (2, 2), 1, channels_last=True) == "gemm_nhwc"
        assert h(op, (8, 64, 56, 56), (64, 64, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, channels_last=True) == "gemm"
    x = in_memory_order(rng.standard_normal((2, 16, 40, 40)).astype(np.float32), (0, 2, 3, 1))
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)  # 40 pixels wide: not MEC's; NHWC in, so the channels-last GEMM
    assert layout.channels_last_order(y.data) == (0, 2, 3, 1)
    np.testing.assert_allclose(y.data, F.conv2d(np.ascontiguousarray(x), w, padding=1).data, rtol=0, atol=1e-4)
    assert layout.channels_last_order(F.conv2d(np.ascontiguousarray(x), w, padding=1).data) is None


def test_fused_bias_relu_epilogue_on_a_channels_innermost_output(rng):
    from atrous.functional.fused import conv2d_relu

    x = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    assert algorithms.heuristic("forward", x.shape, w.shape, (1, 1), ((1, 1), (1, 1)), (1, 1), 1) == "mec"
    y = conv2d_relu(x, w, b, padding=1).data
    assert layout.channels_last_order(y) is not None
    with algorithms.use_algorithm("gemm"):
        want = np.maximum(F.conv2d(x, w, b, padding=1).data, 0)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-5 * np.abs(want).max())
