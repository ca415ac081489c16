"""Segmentation models: FCN / DeepLabv3 on ResNet-50 as torchvision, FCN-8s, the tiny variants.

Oracles: torchvision's published parameter counts; torchvision's definitions restated in plain
PyTorch (``tests/torch_reference_segmentation.py``; meta device when only keys and shapes
matter) run with the same weights; Long et al.'s crop offsets from their Caffe prototxt;
receptive-field arithmetic for the output strides.
"""
from __future__ import annotations

import numpy as np
import pytest

import atrous
from atrous import nn
from atrous.analysis import receptive_field
from atrous.models import segmentation as seg
from atrous.models.fcn8s import fcn8s, fcn8s_tiny
from model_helpers import n_params, relative_error, shapes, to_numpy_state


def eval_outputs(model, x):
    model.eval()
    with atrous.no_grad():
        return {k: np.asarray(v) for k, v in model(x).items()}


# ----- torchvision's ResNet-50 models: counts, keys, logits ---------------------------------
# (constructor, kwargs, torchvision's parameter count)
RESNET50_MODELS = [
    ("fcn_resnet50", dict(num_classes=21, aux_loss=True), 35_322_218),
    ("fcn_resnet50", dict(num_classes=21, aux_loss=False), None),
    ("deeplabv3_resnet50", dict(num_classes=21, aux_loss=True), 42_004_074),
    ("deeplabv3_resnet50", dict(num_classes=7, aux_loss=False), None),
]


@pytest.mark.parametrize("name,kwargs,published", RESNET50_MODELS,
                         ids=[f"{n}-{k['num_classes']}-aux{k['aux_loss']}" for n, k, _ in RESNET50_MODELS])
def test_resnet50_models_match_torchvision_keys_shapes_counts(torch, name, kwargs, published):
    import torch_reference_segmentation as ref

    model = getattr(seg, name)(**kwargs)
    with torch.device("meta"):
        twin = getattr(ref, name)(**kwargs)
    assert shapes(model.state_dict()) == shapes(twin.state_dict())
    count = n_params(model)
    assert count == sum(p.numel() for p in twin.parameters())
    if published is not None:
        assert count == published
    assert ("aux_classifier.0.weight" in model.state_dict()) == kwargs["aux_loss"]


def test_resnet50_backbone_is_dilated_torchvision_resnet50():
    model = seg.deeplabv3_resnet50()
    body = model.backbone
    assert list(body.keys()) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                 "layer4"]
    # layer3 dilates at 2 and layer4 at 4 after their first blocks (which keep the previous
    # rate), and neither strides: output stride 8.
    assert body.layer3[0].conv2.stride == (1, 1) and body.layer3[1].conv2.dilation == (2, 2)
    assert body.layer4[0].conv2.dilation == (2, 2) and body.layer4[1].conv2.dilation == (4, 4)
    aspp = model.classifier[0]
    assert [m[0].dilation for m in list(aspp.convs)[1:4]] == [(12, 12), (24, 24), (36, 36)]


@pytest.mark.parametrize("name,aux", [("deeplabv3_resnet50", True), ("fcn_resnet50", False)])
def test_resnet50_models_logits_match_pytorch(torch, name, aux):
    import torch_reference_models as ref_models
    import torch_reference_segmentation as ref

    torch.manual_seed(0)
    twin = ref_models.randomize_batchnorm(getattr(ref, name)(num_classes=21, aux_loss=aux)).eval()
    model = getattr(seg, name)(num_classes=21, aux_loss=aux)
    model.load_state_dict(to_numpy_state(twin))
    x = np.random.default_rng(1).standard_normal((1, 3, 128, 128)).astype(np.float32)
    got = eval_outputs(model, x)
    with torch.no_grad():
        want = {k: v.numpy() for k, v in twin(torch.from_numpy(x)).items()}
    assert sorted(got) == sorted(want) == (["aux", "out"] if aux else ["out"])
    for key in want:
        assert got[key].shape == (1, 21, 128, 128)
        assert relative_error(got[key], want[key]) < 1e-4, key


# ----- FCN-8s ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg_fcn8s():
    return fcn8s(num_classes=21)


def test_fcn8s_keys_counts_and_long_et_al_offsets(torch, vgg_fcn8s):
    import torch_reference_segmentation as ref

    with torch.device("meta"):
        twin = ref.fcn8s(num_classes=21)
    assert shapes(vgg_fcn8s.state_dict()) == shapes(twin.state_dict())
    # features (VGG-16's 14,714,688) + fc6 102,764,544 + fc7 16,781,312 + score_fr 86,037
    # + score_pool4 10,773 + score_pool3 5,397 + 2 x upscore 7,056 + upscore8 112,896.
    assert n_params(vgg_fcn8s) == 134_489_759 == sum(p.numel() for p in twin.parameters())
    # The crop offsets of voc-fcn8s/train.prototxt (Crop layers: 5, 9, 31).
    assert vgg_fcn8s.offsets == (5, 9, 31)
    assert vgg_fcn8s.features[0].padding == (100, 100)
    assert vgg_fcn8s.fc6.kernel_size == (7, 7) and vgg_fcn8s.fc7.kernel_size == (1, 1)


def test_fcn8s_logits_match_pytorch_at_odd_size(torch, vgg_fcn8s):
    import torch_reference_segmentation as ref

    torch.manual_seed(0)
    twin = ref.fcn8s(num_classes=21).eval()
    vgg_fcn8s.load_state_dict(to_numpy_state(twin))
    x = np.random.default_rng(2).standard_normal((1, 3, 19, 26)).astype(np.float32)
    got = eval_outputs(vgg_fcn8s, x)["out"]
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (1, 21, 19, 26)
    assert relative_error(got, want) < 1e-4


def test_fcn8s_from_pretrained_vgg_copies_fc_layers():
    from atrous.models import VGG
    from atrous.models.fcn8s import TinyVGG

    vgg = TinyVGG(num_classes=5, width=4)
    model = fcn8s_tiny(num_classes=3, width=4, pretrained_backbone_model=vgg)
    fc6 = vgg.classifier[1].weight.data.reshape(model.fc6.weight.shape)
    np.testing.assert_array_equal(model.fc6.weight.data, fc6)
    np.testing.assert_array_equal(model.features[0].weight.data, vgg.features[0].weight.data)
    assert model.features[0].padding == (45, 45) and vgg.features[0].padding == (1, 1)
    assert model.score_fr.out_channels == 3
    assert issubclass(VGG, nn.Module)


@pytest.mark.parametrize("hw", [(64, 64), (33, 47), (9, 8)])
def test_fcn8s_tiny_matches_pytorch(torch, hw):
    import torch_reference_models as ref_models
    import torch_reference_segmentation as ref

    torch.manual_seed(1)
    twin = ref_models.randomize_batchnorm(ref.fcn8s_tiny(num_classes=11)).eval()
    model = fcn8s_tiny(num_classes=11)
    assert shapes(model.state_dict()) == shapes(twin.state_dict())
    assert n_params(model) == 646_241 == sum(p.numel() for p in twin.parameters())
    # (1, 1, pad - 5), worked out by hand in the reference's docstring.
    assert model.offsets == (1, 1, 40)
    model.load_state_dict(to_numpy_state(twin))
    x = np.random.default_rng(3).standard_normal((2, 1, *hw)).astype(np.float32)
    got = eval_outputs(model, x)["out"]
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (2, 11, *hw)
    assert relative_error(got, want) < 1e-4


def test_fcn8s_tiny_init_is_long_et_al():
    model = fcn8s_tiny(num_classes=4, width=4)
    for layer in (model.score_fr, model.score_pool4, model.score_pool3):
        assert not np.any(layer.weight.data) and not np.any(layer.bias.data)
    # upscore8: fixed bilinear x8, one class to itself (tent 1 - |j - 7.5| / 8).
    w = model.upscore8.weight.data
    tent = 1 - np.abs(np.arange(16) - 7.5) / 8
    np.testing.assert_allclose(w[2, 2], np.outer(tent, tent), rtol=1e-6)
    assert not np.any(w[0, 1])
    assert not model.upscore8.weight.requires_grad and model.upscore2.weight.requires_grad
    # Zero scores everywhere until trained.
    out = eval_outputs(model, np.ones((1, 1, 20, 20), np.float32))["out"]
    assert out.shape == (1, 4, 20, 20) and not np.any(out)


def test_fcn8s_tiny_trains_every_learnable_layer():
    atrous.manual_seed(0)
    model = fcn8s_tiny(num_classes=3, width=4)
    for layer in (model.score_fr, model.score_pool4, model.score_pool3):  # leave zero init
        nn.init.normal_(layer.weight, 0, 0.1)
    x = np.random.default_rng(0).standard_normal((2, 1, 24, 24)).astype(np.float32)
    target = np.random.default_rng(1).integers(0, 3, (2, 24, 24))
    atrous.functional.cross_entropy(model(x)["out"], target).backward()
    for name, p in model.named_parameters():
        if name == "upscore8.weight":
            assert p.grad is None
        else:
            assert p.grad is not None and np.any(np.asarray(p.grad)), name


# ----- tiny DeepLab / FCN --------------------------------------------------------------------
def test_tiny_models_same_parameters_with_and_without_dilation():
    for build in (seg.deeplabv3_tiny, seg.fcn_tiny,
                  lambda **kw: seg.deeplabv3_tiny(aspp=False, **kw)):
        a, b = build(dilation=True), build(dilation=False)
        assert shapes(a.state_dict()) == shapes(b.state_dict())
    assert n_params(seg.deeplabv3_tiny()) == 333_051
    assert n_params(seg.deeplabv3_tiny(aspp=False)) == 303_995
    assert n_params(seg.fcn_tiny()) == 164_747
    # backbone 155,312: conv1 144 + bn 32; layer1 2*(2304+32); layer2 4608+9216+2*64+512+64;
    # layer3 18432+36864+2*128+2048+128; layer4 2*(36864+128)+4096+128.
    assert n_params(seg.deeplabv3_tiny().backbone) == 155_312


@pytest.mark.parametrize("dilation,stride,rf", [(True, 8, 143), (False, 32, 191)])
def test_tiny_backbone_output_stride_and_receptive_field(dilation, stride, rf):
    model = seg.deeplabv3_tiny(dilation=dilation)
    field = receptive_field(model.backbone, (1, 64, 64))
    assert field.jump == (stride, stride)
    assert field.output_hw == (64 // stride, 64 // stride)
    # r = 1 + sum (k - 1) * d * jump over the longest path, jump = product of earlier strides.
    # (kernel, dilation, stride) along the path: stem conv, max pool, then each BasicBlock's
    # two 3x3s; a dilated stage's first block keeps the previous rate (torchvision's rule).
    if dilation:
        l3, l4 = [(3, 1, 1), (3, 1, 1)], [(3, 2, 1), (3, 2, 1)]
    else:
        l3, l4 = [(3, 1, 2), (3, 1, 1)], [(3, 1, 2), (3, 1, 1)]
    path = [(3, 1, 2), (3, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 2), (3, 1, 1), *l3, *l4]
    want, jump = 1, 1
    for k, d, s in path:
        want += (k - 1) * d * jump
        jump *= s
    assert jump == stride
    assert want == rf == field.size[0]


@pytest.mark.parametrize("build", [seg.deeplabv3_tiny, seg.fcn_tiny,
                                   lambda **kw: seg.deeplabv3_tiny(aspp=False, **kw)])
@pytest.mark.parametrize("dilation", [True, False])
def test_tiny_models_shapes_and_gradients(build, dilation):
    atrous.manual_seed(0)
    model = build(num_classes=5, dilation=dilation, aux_loss=True)
    x = np.random.default_rng(0).standard_normal((2, 1, 40, 36)).astype(np.float32)
    out = model(x)
    assert sorted(out) == ["aux", "out"]
    assert out["out"].shape == out["aux"].shape == (2, 5, 40, 36)
    target = np.random.default_rng(1).integers(0, 5, (2, 40, 36))
    target[:, :4] = 255
    loss = atrous.functional.cross_entropy(out["out"], target, ignore_index=255)
    loss = loss + 0.4 * atrous.functional.cross_entropy(out["aux"], target, ignore_index=255)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.all(np.isfinite(np.asarray(p.grad))), name
    assert np.any(np.asarray(model.backbone.conv1.weight.grad))


@pytest.mark.parametrize("dilation", [True, False])
def test_deeplabv3_tiny_matches_pytorch(torch, dilation):
    import torch_reference_models as ref_models
    import torch_reference_segmentation as ref

    torch.manual_seed(2)
    twin = ref_models.randomize_batchnorm(ref.deeplabv3_tiny(11, dilation)).eval()
    model = seg.deeplabv3_tiny(num_classes=11, dilation=dilation)
    assert shapes(model.state_dict()) == shapes(twin.state_dict())
    model.load_state_dict(to_numpy_state(twin))
    x = np.random.default_rng(4).standard_normal((3, 1, 48, 56)).astype(np.float32)
    got = eval_outputs(model, x)["out"]
    with torch.no_grad():
        want = twin(torch.from_numpy(x))["out"].numpy()
    assert relative_error(got, want) < 1e-4


def test_aspp_rates_and_plain_head():
    model = seg.deeplabv3_tiny(atrous_rates=(1, 3), width=8)
    aspp = model.classifier[0]
    assert [type(m).__name__ for m in aspp.convs] == ["Sequential", "ASPPConv", "ASPPConv",
                                                      "ASPPPooling"]
    assert [m[0].dilation for m in list(aspp.convs)[1:3]] == [(1, 1), (3, 3)]
    assert aspp.project[0].in_channels == 4 * 32
    plain = seg.deeplabv3_tiny(aspp=False, width=8).classifier
    convs = [m for m in plain if isinstance(m, nn.Conv2d)]
    assert [c.dilation for c in convs] == [(1, 1)] * 5 and convs[-1].out_channels == 11
    with pytest.raises(ValueError, match="atrous_rates"):
        seg.deeplabv3_tiny(atrous_rates=(0, 2))


def test_registry():
    assert seg.list_segmentation_models() == sorted(seg.SEGMENTATION_MODELS)
    model = seg.get_segmentation_model("deeplab_tiny", num_classes=3, dilation=False)
    assert isinstance(model, seg.DeepLabV3) and model.classifier[-1].out_channels == 3
    assert isinstance(seg.get_segmentation_model("fcn8s_tiny", num_classes=3), nn.Module)
    with pytest.raises(ValueError, match="unknown model 'unet'.*deeplab_tiny"):
        seg.get_segmentation_model("unet")
