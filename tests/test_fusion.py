"""Inference fusions: BatchNorm folded into the convolution, and the fused bias + ReLU epilogue.

Oracles: the unfused model in eval mode (a composed twin), a plain-loop convolution, PyTorch's
``fuse_conv_bn_eval`` / ``fuse_modules`` on the same weights, and float64 finite differences for
the fused op's backward.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import Tensor, nn
from atrous.functional import fused
from atrous.functional.fused import bias_relu_, conv2d_relu
from atrous.models import resnet18
from atrous.nn.utils import ConvReLU2d, fuse, fuse_conv_bn_eval, fuse_conv_bn_weights
from gradcheck import check_gradients


def randomise_bn(model, rng):
    """Running statistics and affine parameters far from the identity, so folding matters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            if m.weight is not None:
                m.weight.data[...] = 0.5 + rng.random(c)
                m.bias.data[...] = 0.3 * rng.standard_normal(c)
            m.running_mean.data[...] = 0.3 * rng.standard_normal(c)
            m.running_var.data[...] = 0.2 + rng.random(c)
    return model


def run(model, x):
    with atrous.no_grad():
        return model(Tensor(x)).numpy()


def assert_close_to_scale(got, want, rtol):
    """Elementwise error within ``rtol`` of the output's scale (float32 accumulations differ)."""
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


# ----- folding one pair ------------------------------------------------------------------------
def bn_eval_loop(z, mean, var, eps, gamma, beta):
    """BatchNorm in eval mode written per channel, in float64."""
    out = np.empty(z.shape, np.float64)
    for c in range(z.shape[1]):
        out[:, c] = (z[:, c] - mean[c]) / np.sqrt(var[c] + eps) * gamma[c] + beta[c]
    return out


@pytest.mark.parametrize("bias,affine,groups,stride", [(True, True, 1, 1), (False, True, 2, 2), (True, False, 1, 1)])
def test_fuse_conv_bn_eval_matches_conv_then_bn(rng, bias, affine, groups, stride):
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1, groups=groups, bias=bias, dtype=np.float64)
    bn = nn.BatchNorm2d(6, eps=1e-3, affine=affine, dtype=np.float64)
    randomise_bn(bn, rng)
    conv.eval(), bn.eval()
    x = rng.standard_normal((3, 4, 7, 6))
    z = run(conv, x)
    g = np.ones(6) if not affine else bn.weight.numpy()
    be = np.zeros(6) if not affine else bn.bias.numpy()
    want = bn_eval_loop(z, bn.running_mean.numpy(), bn.running_var.numpy(), 1e-3, g, be)
    fused_conv = fuse_conv_bn_eval(conv, bn)
    assert type(fused_conv) is nn.Conv2d and fused_conv.bias is not None
    assert fused_conv.weight.dtype == np.float64 and not fused_conv.training
    np.testing.assert_allclose(run(fused_conv, x), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run(bn, z), want, rtol=1e-10, atol=1e-12)  # the loop is BN's meaning
    assert conv.bias is None or conv.bias.data is not fused_conv.bias.data  # inputs untouched


def test_fuse_weights_match_torch(torch, rng):
    """Same weights through torch.nn.utils.fusion.fuse_conv_bn_eval: same folded weight and bias."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval as torch_fuse

    tconv = torch.nn.Conv2d(5, 8, 3, padding=1, bias=True).double().eval()
    tbn = torch.nn.BatchNorm2d(8).double().eval()
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(0.5 + rng.random(8)))
        tbn.bias.copy_(torch.from_numpy(rng.standard_normal(8)))
        tbn.running_mean.copy_(torch.from_numpy(rng.standard_normal(8)))
        tbn.running_var.copy_(torch.from_numpy(0.2 + rng.random(8)))
    tf = torch_fuse(tconv, tbn)
    conv = nn.Conv2d(5, 8, 3, padding=1, dtype=np.float64)
    bn = nn.BatchNorm2d(8, dtype=np.float64)
    conv.load_state_dict(tconv.state_dict())
    bn.load_state_dict(tbn.state_dict())
    af = fuse_conv_bn_eval(conv.eval(), bn.eval())
    np.testing.assert_allclose(af.weight.numpy(), tf.weight.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(af.bias.numpy(), tf.bias.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_fuse_conv_bn_weights_formula():
    # s = gamma / sqrt(var + eps): (2/sqrt(4), 1/sqrt(1)); b' = (b - mean) * s + beta
    w, b = fuse_conv_bn_weights(np.ones((2, 1, 1, 1), np.float32), np.array([1.0, 2.0], np.float32),
                                np.array([3.0, -1.0]), np.array([3.5, 0.5]), 0.5,
                                np.array([2.0, 1.0]), np.array([0.5, 0.0]))
    assert w.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_allclose(w.ravel(), [1.0, 1.0])
    np.testing.assert_allclose(b, [(1 - 3) * 1.0 + 0.5, (2 + 1) * 1.0])


# ----- fused bias + ReLU epilogue --------------------------------------------------------------
def conv_ref(x, w, b, stride, pad, dilation):
    """Plain loops over output pixels, taps and channels (groups=1), in float64."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH = (H + 2 * pad - dilation * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * pad - dilation * (KW - 1) - 1) // stride + 1
    y = np.zeros((N, O, OH, OW))
    for i in range(OH):
        for j in range(OW):
            for kh in range(KH):
                for kw in range(KW):
                    patch = xp[:, :, i * stride + kh * dilation, j * stride + kw * dilation]  # (N, C)
                    y[:, :, i, j] += patch @ w[:, :, kh, kw].T
    return y + b.reshape(1, -1, 1, 1)


def test_conv2d_relu_matches_loop_reference(rng):
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    y = conv2d_relu(x, w, b, stride=2, padding=1, dilation=1).numpy()
    want = np.maximum(conv_ref(x, w, b, 2, 1, 1), 0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert (y == 0).any() and (y > 0).any()


@settings(max_examples=25)
@given(
    n=st.integers(2, 3), c=st.integers(1, 4), o=st.integers(1, 5), hw=st.integers(3, 9),
    k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2), pad=st.integers(0, 2),
    dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]), bias=st.booleans(),
    transposed=st.booleans(), seed=st.integers(0, 2**16),
)
def test_conv2d_relu_against_torch(torch, n, c, o, hw, k, stride, pad, dilation, groups, bias, transposed, seed):
    c, o = c * groups, o * groups
    if hw + 2 * pad < dilation * (k - 1) + 1:
        return
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c, hw, hw + 1)).astype(np.float32)
    if transposed:  # a non-contiguous view with the same values
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    w = r.standard_normal((o, c // groups, k, k)).astype(np.float32)
    b = r.standard_normal(o).astype(np.float32) if bias else None
    got = conv2d_relu(x, w, b, stride, pad, dilation, groups).numpy()
    tb = None if b is None else torch.from_numpy(b)
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), tb,
                                                  stride, pad, dilation, groups)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_epilogue_blocks_split_rows(rng, monkeypatch):
    """Blocks smaller than one (image, channel) row, and ones straddling images, give the same result."""
    y = rng.standard_normal((3, 5, 4, 6))
    b = rng.standard_normal(5)
    want = np.maximum(y + b.reshape(1, -1, 1, 1), 0)
    for nbytes in (1, 8 * 24 * 2, 8 * 24 * 7, 1 << 20):  # 1 row, 2 rows, 7 rows (crosses images), all
        monkeypatch.setattr(fused, "EPILOGUE_BYTES", nbytes)
        np.testing.assert_array_equal(bias_relu_(y.copy(), b), want)
        np.testing.assert_array_equal(bias_relu_(y.copy(), None), np.maximum(y, 0))
        np.testing.assert_array_equal(bias_relu_(y.copy(), b, relu=False), y + b.reshape(1, -1, 1, 1))
    strided = np.asfortranarray(y)  # not C-contiguous: must still be updated in place
    assert bias_relu_(strided, b) is strided
    np.testing.assert_array_equal(strided, want)


def test_conv2d_relu_gradients(rng):
    x = rng.standard_normal((2, 2, 5, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    check_gradients(lambda x, w, b: conv2d_relu(x, w, b, stride=1, padding=1), x, w, b)
    check_gradients(lambda x, w, b: conv2d_relu(x, w, b, stride=2, padding=0), x, w, b)


def test_conv2d_relu_equals_composed_and_unbatched(rng):
    x = rng.standard_normal((3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    got = conv2d_relu(x, w, b, padding="same")
    assert got.shape == (4, 6, 6)
    np.testing.assert_array_equal(got.numpy(), F.relu(F.conv2d(x, w, b, padding="same")).numpy())


def test_conv2d_relu_errors():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="conv2d_relu: input has 3 channels but weight expects 4"):
        conv2d_relu(x, np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(TypeError, match="conv2d_relu: input has dtype float32 but weight has dtype float64"):
        conv2d_relu(x, np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d_relu: bias must have shape \(2,\)"):
        conv2d_relu(x, np.zeros((2, 3, 3, 3), np.float32), np.zeros(3, np.float32))


# ----- fuse(model) -----------------------------------------------------------------------------
def conv_bn_relu_net(dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False, dtype=dtype), nn.BatchNorm2d(8, dtype=dtype), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, dtype=dtype), nn.ReLU(),
        nn.Conv2d(8, 4, 1, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype),
    )


def test_fuse_sequential_conv_bn_relu(rng):
    net = randomise_bn(conv_bn_relu_net(), rng).eval()
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    want = run(net, x)
    assert net.fuse() is net
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["ConvReLU2d", "Identity", "Identity", "ConvReLU2d", "Identity", "Conv2d", "Identity"]
    got = run(net, x)
    assert got.dtype == np.float32
    assert_close_to_scale(got, want, 1e-5)
    assert list(net.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    net.fuse()  # idempotent: nothing left to fuse
    assert [type(m).__name__ for m in net] == kinds


def test_fuse_sequential_against_torch_fuse_modules(torch, rng):
    """Same weights in PyTorch, fused by torch.ao.quantization.fuse_modules (ConvReLU2d + Identity)."""
    from torch.ao.quantization import fuse_modules

    net = randomise_bn(conv_bn_relu_net(np.float64), rng).eval()
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 1), torch.nn.BatchNorm2d(4),
    ).double().eval()
    tnet.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    tfused = fuse_modules(tnet, [["0", "1", "2"], ["3", "4"], ["5", "6"]])
    assert type(tfused[0]).__name__ == "ConvReLU2d"
    x = rng.standard_normal((2, 3, 9, 9))
    net.fuse()
    got = run(net, x)
    with torch.no_grad():
        want = tfused(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net[0].weight.numpy(), tfused[0][0].weight.detach().numpy(), rtol=1e-12)


def test_fuse_resnet18_equal_outputs(rng):
    model = randomise_bn(resnet18(num_classes=10), rng).eval()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    want = run(model, x)
    convs = sum(type(m) is nn.Conv2d for m in model.modules())
    model.fuse()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(type(m) is nn.Conv2d for m in model.modules()) == convs == 20  # 1 + 16 + 3 downsample
    assert isinstance(model.layer1[0].relu, nn.ReLU)  # shared between branch and sum: kept
    assert type(model.layer2[0].downsample[1]) is nn.Identity
    assert model.layer2[0].downsample[0].bias is not None
    assert_close_to_scale(run(model, x), want, 1e-4)


def test_fuse_cifar_style_named_pairs(rng):
    """Top-level conv1/bn1 and block conv/bn siblings (the benchmark's CIFAR ResNet naming)."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x))) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.block = Block()

        def forward(self, x):
            return self.block(F.relu(self.bn1(self.conv1(x))))

    net = randomise_bn(Net(), rng).eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = run(net, x)
    fuse(net, example_input=x)
    assert type(net.bn1) is nn.Identity and type(net.block.bn) is nn.Identity
    assert_close_to_scale(run(net, x), want, 1e-5)


class PreActBlock(nn.Module):
    """Registers conv1 before bn1 but applies bn1 first: the named rule's false positive."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.conv1(F.relu(self.bn1(x)))


def test_fuse_example_input_catches_wrong_pair_and_undoes(rng):
    net = randomise_bn(PreActBlock(), rng).eval()
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    want = run(net, x)
    conv, bn = net.conv1, net.bn1
    with pytest.raises(ValueError, match="fuse: the fused model's output differs"):
        fuse(net, example_input=x)
    assert net.conv1 is conv and net.bn1 is bn
    np.testing.assert_array_equal(run(net, x), want)


def test_fuse_explicit_groups(rng):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    net = randomise_bn(net, rng).eval()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    want = run(net, x)
    fuse(net, groups=[["0", "1"]])  # BN only: the ReLU stays a module
    assert [type(m).__name__ for m in net] == ["Conv2d", "Identity", "ReLU"]
    assert_close_to_scale(run(net, x), want, 1e-5)
    with pytest.raises(TypeError, match="fuse: a group must start with a Conv2d"):
        fuse(net, groups=[["2", "0"]])


def test_shared_relu_is_not_removed(rng):
    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(2, 2, 1), relu, nn.Conv2d(2, 2, 1), relu).eval()
    fuse(net)
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]


def test_train_mode_refused(rng):
    net = conv_bn_relu_net()
    with pytest.raises(ValueError, match="fuse: the model is in training mode.*model.eval"):
        net.fuse()
    assert type(net[1]) is nn.BatchNorm2d
    with pytest.raises(ValueError, match="fuse_conv_bn_eval: fusion is only valid in eval mode"):
        fuse_conv_bn_eval(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    # a model in eval mode whose BN was put back in training is refused too
    net.eval()
    net[1].train()
    with pytest.raises(ValueError, match="only valid in eval mode"):
        fuse(net)


def test_fuse_conv_bn_eval_errors():
    conv = nn.Conv2d(3, 4, 1).eval()
    with pytest.raises(ValueError, match="out_channels=4 but bn has num_features=5"):
        fuse_conv_bn_eval(conv, nn.BatchNorm2d(5).eval())
    with pytest.raises(ValueError, match="track_running_stats=False"):
        fuse_conv_bn_eval(conv, nn.BatchNorm2d(4, track_running_stats=False).eval())
    with pytest.raises(TypeError, match="conv must be an atrous.nn.Conv2d, got ConvTranspose2d"):
        fuse_conv_bn_eval(nn.ConvTranspose2d(3, 4, 1).eval(), nn.BatchNorm2d(4).eval())


def test_conv_relu_module_padding_modes(rng):
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(run(ConvReLU2d.from_conv(conv), x), np.maximum(run(conv, x), 0))
