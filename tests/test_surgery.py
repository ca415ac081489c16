"""FC-to-conv surgery (``atrous.surgery``): exact weight copies, logits at the training size,
dense score maps against windows scored one by one.

Oracles, all independent of the code under test: the original model (training-size logits);
a plain crop loop written here that runs the original model on every window (exact for
trunks without padding); the original classifier applied to each block of the trunk's map
(exact for any trunk); PyTorch running the same weights on the crops; hand-written index
arithmetic for the Linear -> Conv2d weight reshape.
"""
from __future__ import annotations

import doctest
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
from atrous import models, nn, surgery
from atrous.models.vgg import CFG_D, VGG, make_layers


def run(model, x):
    with atrous.no_grad():
        return np.asarray(model(x))


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def crop_loop(model, x, window, stride):
    """The original model on every window at (i*sh, j*sw), one forward pass each."""
    (wh, ww), (sh, sw) = window, stride
    N, _, H, W = x.shape
    OH, OW = (H - wh) // sh + 1, (W - ww) // sw + 1
    out = None
    for i in range(OH):
        for j in range(OW):
            y = run(model, x[:, :, i * sh : i * sh + wh, j * sw : j * sw + ww]).reshape(N, -1)
            if out is None:
                out = np.empty((N, y.shape[1], OH, OW), y.dtype)
            out[:, :, i, j] = y
    return out


def feature_window_loop(head, fmap, kernel):
    """``head`` (flatten -> original classifier) on every (kh, kw) block of a trunk map."""
    kh, kw = kernel
    N, _, H, W = fmap.shape
    cols = {}
    for i in range(H - kh + 1):
        for j in range(W - kw + 1):
            cols[i, j] = run(head, fmap[:, :, i : i + kh, j : j + kw])
    out = np.empty((N, cols[0, 0].shape[1], H - kh + 1, W - kw + 1), cols[0, 0].dtype)
    for (i, j), y in cols.items():
        out[:, :, i, j] = y
    return out


def randomise_batchnorm(model, rng):
    """Non-trivial running statistics and affine parameters, so eval-mode BN matters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[...] = rng.normal(0, 0.5, c)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.normal(0, 0.2, c)


class NarrowVGG(VGG):
    """vgg16's layout (13 3x3 convs padded by 1, 5 max pools, avgpool 7x7, classifier
    7x7xC -> F -> F -> classes) with the widths divided by ``divisor``; VGG's own forward."""

    def __init__(self, batch_norm=False, classes=10, hidden=64, divisor=16):
        nn.Module.__init__(self)  # VGG.__init__ would build the full-width classifier
        cfg = [v if v == "M" else v // divisor for v in CFG_D]
        self.features = make_layers(cfg, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 // divisor * 7 * 7, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, classes),
        )


narrow_vgg = NarrowVGG


def pointwise_vgg(classes=10, hidden=32, divisor=16):
    """vgg16's layout with 1x1 convolutions (no padding) in place of the padded 3x3 ones:
    the trunk's receptive field is then exactly 32x32 at stride 32, so 224 -> 7x7 and
    384 -> 12x12 as for VGG-16, and every score can be compared with a crop exactly."""
    layers, cin = [], 3
    for v in CFG_D:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v // divisor, 1), nn.ReLU()]
            cin = v // divisor
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(*layers)),
        ("classifier", nn.Sequential(
            nn.Flatten(), nn.Linear(cin * 7 * 7, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, classes))),
    ]))


# ----- training-size logits ----------------------------------------------------------------

@pytest.mark.parametrize("build, shape, batch", [
    (lambda: models.digits_cnn(), (1, 8, 8), 3),
    (lambda: models.lenet5(), (1, 32, 32), 2),
    (lambda: models.lenet5(activation="relu", pool="max", input_size=28), (1, 28, 28), 2),
    (lambda: narrow_vgg(batch_norm=True), (3, 224, 224), 1),
])
def test_training_size_gives_original_logits_as_1x1_map(build, shape, batch):
    rng = np.random.default_rng(0)
    model = build()
    randomise_batchnorm(model, rng)
    model.eval()
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    fc = surgery.fully_convolutional(model, shape, check=False)
    want = run(model, x)
    got = run(fc, x)
    assert got.shape == (*want.shape, 1, 1)
    assert rel_err(got[:, :, 0, 0], want) < 1e-5


@pytest.mark.parametrize("name, kernel", [("alexnet", (6, 6)), ("vgg16", (7, 7))])
def test_alexnet_and_vgg16_at_224(name, kernel):
    model = models.get_model(name).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = run(model, x)
    fc = surgery.fully_convolutional(model, (3, 224, 224), check=False)
    first = next(m for m in fc.classifier if isinstance(m, nn.Conv2d))
    c = 512 if name == "vgg16" else 256
    assert (fc.kernel_size, fc.stride) == (kernel, (32, 32))
    assert tuple(first.weight.shape) == (4096, c, *kernel)
    got = run(fc, x)
    assert got.shape == (1, 1000, 1, 1)
    assert rel_err(got[:, :, 0, 0], want) < 1e-4


# ----- the weights ---------------------------------------------------------------------------

def test_weights_copied_exactly_in_flatten_order_and_original_untouched():
    rng = np.random.default_rng(2)
    model = models.lenet5()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    fc = surgery.fully_convolutional(model, (1, 32, 32))
    # Flatten's order: feature index f = c*25 + y*5 + x for a 16x5x5 map.
    W = np.asarray(model.classifier[1].weight)
    K = np.asarray(fc.classifier[1].weight)
    assert K.shape == (120, 16, 5, 5)
    for _ in range(50):
        o, c, y, x = rng.integers(120), rng.integers(16), rng.integers(5), rng.integers(5)
        assert K[o, c, y, x] == W[o, c * 25 + y * 5 + x]
    assert np.array_equal(np.asarray(fc.classifier[3].weight)[:, :, 0, 0],
                          np.asarray(model.classifier[3].weight))
    assert np.array_equal(np.asarray(fc.classifier[5].bias), np.asarray(model.classifier[5].bias))
    # Keys and positions as the original's; Flatten's place is held by an Identity.
    assert list(fc.state_dict()) == list(before)
    assert isinstance(fc.classifier[0], nn.Identity) and len(fc.classifier) == 6
    # A new model: changing it leaves the original as it was.
    for p in fc.parameters():
        p.data[...] = 7.0
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and fc.training


def test_modes_dtype_and_requires_grad_follow_the_original():
    model = models.digits_cnn().to(dtype=np.float64)
    model.classifier[1].weight.requires_grad_(False)
    model.eval()
    fc = surgery.fully_convolutional(model, (1, 8, 8))
    assert not any(m.training for m in fc.modules())
    assert all(p.dtype == np.float64 for p in fc.parameters())
    assert not fc.classifier[1].weight.requires_grad and fc.classifier[4].weight.requires_grad
    assert run(fc, np.zeros((2, 1, 12, 12))).dtype == np.float64
    model.train()
    fc = surgery.fully_convolutional(model, (1, 8, 8))
    assert all(m.training for m in fc.modules())
    assert all(m.training for m in model.modules())  # the check ran in eval mode, then restored


# ----- dense maps against windows ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"activation": "relu", "pool": "max"}])
def test_lenet5_on_48x48_equals_every_32x32_crop(kwargs):
    model = models.lenet5(**kwargs).eval()
    fc = surgery.fully_convolutional(model, (1, 32, 32))
    assert fc.stride == (4, 4) and fc.exact_crops
    x = np.random.default_rng(3).standard_normal((2, 1, 48, 48)).astype(np.float32)
    dense = run(fc, x)
    assert dense.shape == (2, 10, 5, 5)  # (48 - 32) / 4 + 1 windows per axis
    assert rel_err(dense, crop_loop(model, x, (32, 32), (4, 4))) < 1e-5


def test_crop_scores_helper_matches_the_loop():
    model = models.lenet5(activation="relu", pool="max").eval()
    x = np.random.default_rng(4).standard_normal((2, 1, 44, 40)).astype(np.float32)
    got = np.asarray(surgery.crop_scores(model, x, 32, (4, 8)))
    assert got.shape == (2, 10, 4, 2)
    assert np.array_equal(got, crop_loop(model, x, (32, 32), (4, 8)))


def test_digits_cnn_on_16x16_scores_every_window_of_its_feature_map():
    # Padded convolutions: the dense score at (i, j) is the original classifier on the 2x2
    # block of the 16x16 image's trunk map at (i, j); a separately cut 8x8 window sees zero
    # padding at its border instead of its neighbours and so scores differently.
    rng = np.random.default_rng(5)
    model = models.digits_cnn()
    randomise_batchnorm(model, rng)
    model.eval()
    fc = surgery.fully_convolutional(model, (1, 8, 8))
    assert fc.stride == (4, 4) and fc.kernel_size == (2, 2) and not fc.exact_crops
    x = rng.standard_normal((2, 1, 16, 16)).astype(np.float32)
    dense = run(fc, x)
    assert dense.shape == (2, 10, 3, 3)
    want = feature_window_loop(model.classifier, run(model.features, x), (2, 2))
    assert rel_err(dense, want) < 1e-5
    assert rel_err(dense, crop_loop(model, x, (8, 8), (4, 4))) > 1e-3


def test_classic_numbers_384_image_224_windows_stride_32():
    # vgg16's layout without padding (1x1 convs): 12x12 trunk map, 6x6 scores, and the 36
    # separate 224x224 crops at stride 32 give the same 6x6 map.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 3, 384, 384)).astype(np.float32)
    model = pointwise_vgg().eval()
    fc = surgery.fully_convolutional(model, (3, 224, 224))
    assert (fc.stride, fc.kernel_size, fc.exact_crops) == ((32, 32), (7, 7), True)
    assert run(fc.features, x).shape == (1, 32, 12, 12)  # 384 / 32
    dense = run(fc, x)
    assert dense.shape == (1, 10, 6, 6)  # 12 - 7 + 1 = (384 - 224) / 32 + 1
    assert rel_err(dense, crop_loop(model, x, (224, 224), (32, 32))) < 1e-4


def test_classic_numbers_with_vggs_padded_3x3_convs():
    # The real layout (padded 3x3 convs): the same 12x12 map and 6x6 scores; each score is
    # the original classifier on the 7x7 block of the image's map at (i, j).
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 3, 384, 384)).astype(np.float32)
    model = narrow_vgg().eval()
    fc = surgery.fully_convolutional(model, (3, 224, 224))
    assert (fc.stride, fc.kernel_size, fc.exact_crops) == ((32, 32), (7, 7), False)
    fmap = run(fc.features, x)
    assert fmap.shape == (1, 32, 12, 12)
    dense = run(fc.classifier, fmap)
    assert dense.shape == (1, 10, 6, 6)
    head = nn.Sequential(nn.Flatten(), *model.classifier)
    assert rel_err(dense, feature_window_loop(head, fmap, (7, 7))) < 1e-4


@settings(max_examples=12)
@given(data=st.data())
def test_random_unpadded_nets_equal_their_crops(data):
    """Random unpadded trunks (strides and kernels per axis, max/avg pools, rectangular
    training sizes), a Flatten-Linear-ReLU-Linear head: dense map == crop loop everywhere."""
    draw = data.draw
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    layers, cin, sh, sw, rh, rw = [], draw(st.integers(1, 3)), 1, 1, 1, 1
    c0 = cin
    for _ in range(draw(st.integers(1, 3))):
        k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        cout = draw(st.integers(1, 4))
        layers += [nn.Conv2d(cin, cout, k, stride=s), nn.ReLU()]
        rh, rw, sh, sw, cin = rh + (k[0] - 1) * sh, rw + (k[1] - 1) * sw, sh * s[0], sw * s[1], cout
        if draw(st.booleans()):
            pool = draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]))
            layers.append(pool(2))
            rh, rw, sh, sw = rh + sh, rw + sw, 2 * sh, 2 * sw
    # Training size: the receptive field plus 0..2 strides, so the trunk map is 1..3 per axis.
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    wh, ww = rh + ph * sh, rw + pw * sw
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * (ph + 1) * (pw + 1), 5),
                          nn.ReLU(), nn.Linear(5, 3)).eval()
    fc = surgery.fully_convolutional(model, (c0, wh, ww))
    assert fc.stride == (sh, sw) == surgery.total_stride(model)
    assert fc.kernel_size == (ph + 1, pw + 1)
    n_h, n_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    x = rng.standard_normal((2, c0, wh + (n_h - 1) * sh, ww + (n_w - 1) * sw)).astype(np.float32)
    dense = run(fc, x)
    assert dense.shape == (2, 3, n_h, n_w)
    want = crop_loop(model, x, (wh, ww), (sh, sw))
    assert np.allclose(dense, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_dense_scores_match_pytorch_on_the_crops(torch):
    """The same LeNet-5 weights in torch.nn, run on each 32x32 window of a 44x52 image."""
    tn = torch.nn
    model = models.lenet5(activation="relu", pool="max").eval()
    mirror = tn.Sequential(
        tn.Conv2d(1, 6, 5), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(6, 16, 5), tn.ReLU(),
        tn.MaxPool2d(2), tn.Flatten(), tn.Linear(400, 120), tn.ReLU(), tn.Linear(120, 84),
        tn.ReLU(), tn.Linear(84, 10)).eval()
    ours = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    theirs = [m for m in mirror if isinstance(m, (tn.Conv2d, tn.Linear))]
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.weight.copy_(torch.from_numpy(np.asarray(a.weight)))
            b.bias.copy_(torch.from_numpy(np.asarray(a.bias)))
    x = np.random.default_rng(7).standard_normal((2, 1, 44, 52)).astype(np.float32)
    want = np.empty((2, 10, 4, 6), np.float32)
    with torch.no_grad():
        for i in range(4):
            for j in range(6):
                crop = torch.from_numpy(x[:, :, 4 * i : 4 * i + 32, 4 * j : 4 * j + 32].copy())
                want[:, :, i, j] = mirror(crop).numpy()
    dense = run(surgery.fully_convolutional(model, (1, 32, 32)), x)
    assert rel_err(dense, want) < 1e-5


# ----- other layouts ------------------------------------------------------------------------

def test_plain_sequential_with_adaptive_pool_nested_head_and_log_softmax():
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(2, 4, 3)), ("act", nn.Tanh()), ("pool", nn.MaxPool2d(2)),
        ("squash", nn.AdaptiveAvgPool2d((3, None))),
        ("head", nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 4, 6), nn.PReLU(6))),
        ("out", nn.Linear(6, 3)), ("prob", nn.LogSoftmax(dim=-1)),
    ])).eval()
    fc = surgery.fully_convolutional(model, (2, 8, 10))  # trunk map 4x3x4
    assert list(fc.features._modules) == ["conv", "act", "pool"]
    assert list(fc.classifier._modules) == ["squash", "head", "out", "prob"]
    assert [type(m).__name__ for m in fc.classifier.modules()] == [
        "Sequential", "Identity", "Sequential", "Identity", "Conv2d", "PReLU", "Conv2d",
        "LogSoftmax"]
    assert (fc.stride, fc.kernel_size, fc.exact_crops) == ((2, 2), (3, 4), True)
    x = np.random.default_rng(8).standard_normal((2, 2, 12, 14)).astype(np.float32)
    dense = run(fc, x)
    assert dense.shape == (2, 3, 3, 3)
    assert rel_err(dense, crop_loop(model, x, (8, 10), (2, 2))) < 1e-5
    assert np.allclose(np.exp(dense).sum(axis=1), 1, atol=1e-5)  # softmax over the classes


def test_total_stride_of_the_zoo():
    assert surgery.total_stride(narrow_vgg()) == (32, 32)
    assert surgery.total_stride(models.digits_cnn()) == (4, 4)
    assert surgery.total_stride(models.lenet5()) == (4, 4)


def test_doctests():
    assert doctest.testmod(surgery, raise_on_error=False).failed == 0


# ----- errors -------------------------------------------------------------------------------

def test_unsupported_structures_raise_naming_what_was_found():
    with pytest.raises(ValueError, match=r"ResNet is not Sequential-style.*conv1: Conv2d"):
        surgery.fully_convolutional(models.resnet18(num_classes=3), (3, 32, 32))
    with pytest.raises(ValueError, match=r"layer '1' is a Linear applied to a 4-D map"):
        surgery.fully_convolutional(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 3)), (1, 4, 4))
    with pytest.raises(ValueError, match=r"found no Flatten, Linear or adaptive pool"):
        surgery.fully_convolutional(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), (1, 4, 4))
    with pytest.raises(ValueError, match=r"classifier.1 is BatchNorm1d"):
        bad = models.lenet5()
        bad.classifier[1] = nn.BatchNorm1d(400)
        surgery.fully_convolutional(bad, (1, 32, 32))
    with pytest.raises(ValueError, match=r"features.0 is a Linear, which the convolutional trunk"):
        bad = models.lenet5()
        bad.features[0] = nn.Linear(3, 3)
        surgery.fully_convolutional(bad, (1, 32, 32))
    with pytest.raises(ValueError, match=r"in_features=400\) but the map entering it is "
                                         r"16x4x4 = 256 values"):
        surgery.fully_convolutional(models.lenet5(), (1, 28, 28))
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        surgery.fully_convolutional(models.lenet5(), (32, 32))
    with pytest.raises(TypeError, match=r"model must be an atrous.nn.Module"):
        surgery.fully_convolutional(lambda x: x, (1, 32, 32))


def test_adaptive_pool_that_is_not_the_identity_raises():
    model = narrow_vgg(divisor=64)
    with pytest.raises(ValueError, match=r"resizes the trunk's 8x8 map to 7x7.*not the identity"):
        surgery.fully_convolutional(model, (3, 256, 256))


def test_check_catches_a_forward_that_is_not_the_layout():
    class Scaled(models.DigitsCNN):
        def forward(self, x):
            return self.classifier(self.features(x) * 2.0)

    with pytest.raises(ValueError, match=r"does not reproduce the original's scores"):
        surgery.fully_convolutional(Scaled(), (1, 8, 8))
    surgery.fully_convolutional(Scaled(), (1, 8, 8), check=False)  # the caller's own risk


def test_crop_scores_errors():
    model = models.lenet5().eval()
    with pytest.raises(ValueError, match=r"crop_scores: window \(32, 32\) does not fit"):
        surgery.crop_scores(model, np.zeros((1, 1, 30, 40), np.float32), 32, 4)
    with pytest.raises(ValueError, match=r"crop_scores: image must be \(N, C, H, W\)"):
        surgery.crop_scores(model, np.zeros((1, 40, 40), np.float32), 32, 4)
