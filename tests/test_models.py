"""The model zoo: parameter counts, torchvision-compatible state_dict keys, forward passes.

Oracles: torchvision's published parameter counts; the same architectures written in plain
PyTorch (``tests/torch_reference_models.py``, built on the meta device when only keys and
shapes are needed); counts worked out by hand from the layer sizes. Big models are built and
counted but never run, to keep the file fast.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest

import atrous
from atrous import models
from model_helpers import n_params, relative_error, shapes, to_numpy_state


def run_eval(model, x):
    model.eval()
    with atrous.no_grad():
        return np.asarray(model(x))


def check_vgg_initialisation(model):
    """torchvision's VGG init: kaiming_normal_(fan_out) convs, N(0, 0.01) linears, zero biases."""
    fc = np.asarray(model.classifier[0].weight)
    assert abs(fc.std() / 0.01 - 1) < 0.01  # over 102M draws
    assert not np.any(np.asarray(model.classifier[0].bias))
    conv = np.asarray(model.features[28].weight)  # last conv, fan_out = 512 * 9
    assert abs(conv.std() / np.sqrt(2 / (512 * 9)) - 1) < 0.01
    assert not np.any(np.asarray(model.features[28].bias))
    assert isinstance(model.features[30], atrous.nn.MaxPool2d)


# name: (atrous constructor and kwargs, name in tests/torch_reference_models.py and kwargs,
#        torchvision's published count, an extra check on the built model or None).
# vgg16_bn skips VGG's re-initialisation (counts and keys do not depend on it): the big
# models cost more to initialise than anything else in this file.
ZOO = {
    "resnet18": (models.resnet18, {}, "resnet18", {}, 11_689_512, None),
    "resnet34": (models.resnet34, {}, "resnet34", {}, 21_797_672, None),
    "resnet50": (models.resnet50, {}, "resnet50", {}, 25_557_032, None),
    "wide_resnet50_2": (models.wide_resnet50_2, {}, "wide_resnet50_2", {}, 68_883_240, None),
    "alexnet": (models.alexnet, {}, "AlexNet", {}, 61_100_840, None),
    "vgg16": (models.vgg16, {}, "VGG", {}, 138_357_544, check_vgg_initialisation),
    "vgg16_bn": (models.vgg16_bn, {"init_weights": False}, "VGG", {"batch_norm": True},
                 138_365_992, None),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_parameter_count_and_state_dict_match_torchvision_layout(name, torch):
    import torch_reference_models as ref

    build, kwargs, ref_name, ref_kwargs, published, extra_check = ZOO[name]
    model = build(**kwargs)
    assert n_params(model) == published
    with torch.device("meta"):  # keys and shapes only: no memory, no initialisation
        reference = getattr(ref, ref_name)(**ref_kwargs)
    assert shapes(model.state_dict()) == shapes(reference.state_dict())
    if extra_check is not None:
        extra_check(model)
    del model
    gc.collect()


def test_resnet_initialisation_follows_torchvision():
    model = models.resnet18()
    w = np.asarray(model.conv1.weight)
    # kaiming_normal_, fan_out mode: std = sqrt(2 / (64 * 7 * 7)) over 9408 draws.
    assert abs(w.std() / np.sqrt(2 / (64 * 49)) - 1) < 0.05
    assert abs(w.mean()) < 0.002
    np.testing.assert_array_equal(np.asarray(model.bn1.weight), np.ones(64, np.float32))
    np.testing.assert_array_equal(np.asarray(model.layer1[0].bn2.bias), np.zeros(64, np.float32))
    assert np.asarray(model.layer1[0].bn2.weight).min() == 1.0
    zeroed = models.resnet18(zero_init_residual=True)
    for layer in (zeroed.layer1, zeroed.layer4):
        for block in layer:
            assert not np.any(np.asarray(block.bn2.weight))
            assert np.all(np.asarray(block.bn1.weight) == 1)
    bottleneck = models.ResNet(models.Bottleneck, [1, 1, 1, 1], num_classes=3,
                               zero_init_residual=True)
    assert not np.any(np.asarray(bottleneck.layer2[0].bn3.weight))
    assert np.all(np.asarray(bottleneck.layer2[0].bn2.weight) == 1)


def test_resnet18_logits_match_pytorch_with_loaded_state_dict(torch):
    import torch_reference_models as ref

    torch.manual_seed(0)
    reference = ref.randomize_batchnorm(ref.resnet18(), seed=1).eval()
    model = models.resnet18()
    model.load_state_dict(to_numpy_state(reference))
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    got = run_eval(model, x)
    assert got.shape == (2, 1000) and got.dtype == np.float32
    assert relative_error(got, want) < 1e-4
    # The two images get different scores (the batch is not collapsed).
    assert relative_error(got[0], got[1]) > 1e-3


@pytest.mark.parametrize("depth_block", ["resnet18", "resnet50"])
def test_dilated_resnet_matches_pytorch(depth_block, torch):
    """replace_stride_with_dilation=[False, True, True]: output stride 8, dilations 2 and 4."""
    import torch_reference_models as ref

    dil = [False, True, True]
    torch.manual_seed(0)
    reference = getattr(ref, depth_block)(num_classes=7, replace_stride_with_dilation=dil)
    reference = ref.randomize_batchnorm(reference, seed=2).eval()
    model = getattr(models, depth_block)(num_classes=7, replace_stride_with_dilation=dil)
    assert shapes(model.state_dict()) == shapes(reference.state_dict())
    model.load_state_dict(to_numpy_state(reference))
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    model.eval()
    with atrous.no_grad():  # forward() step by step, to see the output stride
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        feats = model.layer4(model.layer3(model.layer2(model.layer1(stem))))
        got = np.asarray(model.fc(model.avgpool(feats).flatten(1)))
    assert relative_error(got, want) < 1e-4
    # Stem /4 and layer2 /2, then no further downsampling: 40 -> 10 -> 5.
    assert feats.shape[-2:] == (5, 5)
    assert model.layer3[0].conv2.dilation == (1, 1)  # the first block keeps the old rate
    assert model.layer3[1].conv2.dilation == (2, 2)
    assert model.layer4[1].conv2.dilation == (4, 4)


def test_resnet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="replace_stride_with_dilation"):
        models.resnet18(replace_stride_with_dilation=[True, False])
    with pytest.raises(ValueError, match="groups=1 and base_width=64"):
        models.BasicBlock(8, 8, groups=2)


def test_wide_resnet_28_10_parameter_count_matches_pytorch(torch):
    import torch_reference_models as ref

    model = models.wide_resnet(28, 10)
    with torch.device("meta"):
        reference = ref.WideResNet(28, 10)
    assert shapes(model.state_dict()) == shapes(reference.state_dict())
    count = n_params(model)
    assert count == sum(p.numel() for p in reference.parameters())
    assert 36.4e6 < count < 36.6e6  # "36.5M" in Zagoruyko & Komodakis, Table 1


def test_wide_resnet_forward_matches_pytorch(torch):
    import torch_reference_models as ref

    torch.manual_seed(0)
    reference = ref.randomize_batchnorm(ref.WideResNet(10, 2, num_classes=5), seed=3).eval()
    model = models.wide_resnet(10, 2, num_classes=5)
    model.load_state_dict(to_numpy_state(reference))
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    assert relative_error(run_eval(model, x), want) < 1e-4


def test_wrn_16_4_forward_shape():
    model = models.wide_resnet(16, 4)
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 2
    assert model.layer3[0].conv2.weight.shape == (256, 256, 3, 3)
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    out = run_eval(model, x)
    assert out.shape == (2, 10)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("depth", [12, 27, 4])
def test_wide_resnet_rejects_depths_that_are_not_6n_plus_4(depth):
    with pytest.raises(ValueError, match="6n \\+ 4"):
        models.wide_resnet(depth, 2)


def test_inception_3a_block_shapes_and_branch_names():
    block = models.inception_3a()
    # 1x1 reductions: 192 -> 96 before the 3x3, 192 -> 16 before the 5x5.
    assert block.branch2[0].conv.weight.shape == (96, 192, 1, 1)
    assert block.branch2[1].conv.weight.shape == (128, 96, 3, 3)
    assert block.branch3[0].conv.weight.shape == (16, 192, 1, 1)
    assert block.branch3[1].conv.weight.shape == (32, 16, 5, 5)
    assert block.branch4[1].conv.weight.shape == (32, 192, 1, 1)
    assert block.branch1.bn.eps == 0.001
    x = np.random.default_rng(4).standard_normal((2, 192, 28, 28)).astype(np.float32)
    out = run_eval(block, x)
    assert out.shape == (2, 256, 28, 28) == (2, block.out_channels, 28, 28)
    assert out.min() >= 0  # every branch ends in ReLU


@pytest.mark.parametrize("k5", [5, 3])
def test_inception_block_matches_pytorch(k5, torch):
    import torch_reference_models as ref

    torch.manual_seed(0)
    reference = ref.randomize_batchnorm(ref.Inception(12, 8, 6, 10, 4, 6, 5, k5=k5), seed=4).eval()
    block = models.Inception(12, 8, 6, 10, 4, 6, 5, branch3_kernel_size=k5)
    assert shapes(block.state_dict()) == shapes(reference.state_dict())
    block.load_state_dict(to_numpy_state(reference))
    x = np.random.default_rng(5).standard_normal((3, 12, 9, 7)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    got = run_eval(block, x)
    assert got.shape == (3, 29, 9, 7)
    assert relative_error(got, want) < 1e-5


def test_alexnet_original_shapes_and_counts(torch):
    import torch_reference_models as ref

    model = models.alexnet_original()
    model.eval()
    x = np.random.default_rng(6).standard_normal((1, 3, 227, 227)).astype(np.float32)
    with atrous.no_grad():
        conv1 = model.features[0](x)
        assert conv1.shape == (1, 96, 55, 55)
        assert isinstance(model.features[2], atrous.nn.LocalResponseNorm)
        assert isinstance(model.features[6], atrous.nn.LocalResponseNorm)
        assert model.features(x).shape == (1, 256, 6, 6)
    # Dense: conv 3-96-256-384-384-256 (11, 5, 3, 3, 3) + fc 9216-4096-4096-1000.
    convs = [(3, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]
    fcs = [(9216, 4096), (4096, 4096), (4096, 1000)]
    dense = sum(o * i * k * k + o for i, o, k in convs) + sum(i * o + o for i, o in fcs)
    assert n_params(model) == dense == 62_378_344
    with torch.device("meta"):
        reference = ref.AlexNetOriginal(groups=2)
    grouped = models.alexnet_original(groups=2)
    assert shapes(grouped.state_dict()) == shapes(reference.state_dict())
    assert n_params(grouped) == 60_965_224  # Caffe's bvlc_alexnet, two-GPU grouping


def test_alexnet_original_matches_pytorch(torch):
    import torch_reference_models as ref

    torch.manual_seed(0)
    reference = ref.AlexNetOriginal(num_classes=10, groups=2).eval()
    model = models.alexnet_original(num_classes=10, groups=2)
    model.load_state_dict(to_numpy_state(reference))
    # Scaled up so the LRN denominator differs visibly from k^beta (by ~10% here).
    x = 100 * np.random.default_rng(7).standard_normal((1, 3, 227, 227)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    assert relative_error(run_eval(model, x), want) < 1e-4


@pytest.mark.parametrize("input_size", [32, 28])
@pytest.mark.parametrize("activation,pool", [("tanh", "avg"), ("relu", "max")])
def test_lenet5_shapes_and_count(input_size, activation, pool):
    model = models.lenet5(input_size=input_size, activation=activation, pool=pool)
    # C1 6x(1x5x5)+6, C3 16x(6x5x5)+16, C5 400->120, F6 120->84, out 84->10.
    assert n_params(model) == 156 + 2416 + 48120 + 10164 + 850 == 61_706
    x = np.random.default_rng(8).standard_normal((3, 1, input_size, input_size)).astype(np.float32)
    with atrous.no_grad():
        assert model.features(x).shape == (3, 16, 5, 5)
        assert model(x).shape == (3, 10)
    assert isinstance(model.classifier[0], atrous.nn.Flatten)


def test_lenet5_rejects_bad_options():
    with pytest.raises(ValueError, match="input_size"):
        models.lenet5(input_size=30)
    with pytest.raises(ValueError, match="activation"):
        models.lenet5(activation="sigmoidish")


def test_digits_cnn_forward_backward_and_count():
    model = models.digits_cnn()
    convs = 32 * 9 + 32 + 64 * 32 * 9 + 64 + 128 * 64 * 9 + 128
    bns = 2 * (32 + 64 + 128)
    fcs = 512 * 128 + 128 + 128 * 10 + 10
    assert n_params(model) == convs + bns + fcs == 160_074
    x = np.random.default_rng(9).standard_normal((5, 1, 8, 8)).astype(np.float32)
    assert model.features(x).shape == (5, 128, 2, 2)
    out = model(x)
    assert out.shape == (5, 10)
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert run_eval(model, x).shape == (5, 10)


def test_registry_builds_every_small_model_and_rejects_unknown_names():
    names = models.list_models()
    assert names == sorted(models.MODELS)
    for name in ["resnet18", "resnet34", "resnet50", "wide_resnet50_2", "alexnet",
                 "alexnet_original", "vgg16", "vgg16_bn", "lenet5", "digits_cnn",
                 "wrn_28_10", "wrn_16_4"]:
        assert name in names
    model = models.get_model("digits_cnn", num_classes=4)
    x = np.zeros((2, 1, 8, 8), np.float32)
    assert run_eval(model, x).shape == (2, 4)
    assert isinstance(models.get_model("lenet5"), models.LeNet5)
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        models.get_model("resnet19")
