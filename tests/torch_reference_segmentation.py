"""Compact PyTorch definitions of torchvision's segmentation models and of FCN-8s, the oracle
for ``tests/test_segmentation_models.py``.

torchvision cannot be installed here, so ``torchvision.models.segmentation``'s FCN and
DeepLabv3 (``_SimpleSegmentationModel``, ``IntermediateLayerGetter``, ``FCNHead``, ``ASPP``,
``DeepLabHead``) are restated in plain ``torch.nn`` with torchvision's attribute names, on the
ResNet-50 of ``tests/torch_reference_models.py``. FCN-8s follows the authors' Caffe net
(``voc-fcn8s/net.py``): conv1_1 padded by 100, ceil-mode pools, crops at the offsets written
in their prototxt (5, 9, 31), given here as numbers rather than derived.
Import this module only inside a test that already holds the ``torch`` fixture.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

import torch_reference_models as ref


class IntermediateLayerGetter(nn.ModuleDict):
    def __init__(self, model, return_layers):
        layers, remaining = OrderedDict(), set(return_layers)
        for name, module in model.named_children():
            layers[name] = module
            remaining.discard(name)
            if not remaining:
                break
        super().__init__(layers)
        self.return_layers = dict(return_layers)

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class SimpleSegmentationModel(nn.Module):
    def __init__(self, backbone, classifier, aux_classifier=None):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x):
        size = x.shape[-2:]
        features = self.backbone(x)
        result = OrderedDict()
        result["out"] = F.interpolate(self.classifier(features["out"]), size=size,
                                      mode="bilinear", align_corners=False)
        if self.aux_classifier is not None:
            result["aux"] = F.interpolate(self.aux_classifier(features["aux"]), size=size,
                                          mode="bilinear", align_corners=False)
        return result


class FCNHead(nn.Sequential):
    def __init__(self, in_channels, channels):
        inter = in_channels // 4
        super().__init__(nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
                         nn.BatchNorm2d(inter), nn.ReLU(), nn.Dropout(0.1),
                         nn.Conv2d(inter, channels, 1))


class ASPPConv(nn.Sequential):
    def __init__(self, cin, cout, dilation):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class ASPPPooling(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, in_channels, atrous_rates, out_channels=256):
        super().__init__()
        modules = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                 nn.BatchNorm2d(out_channels), nn.ReLU())]
        modules += [ASPPConv(in_channels, out_channels, r) for r in atrous_rates]
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    def __init__(self, in_channels, num_classes, atrous_rates=(12, 24, 36), channels=256):
        super().__init__(ASPP(in_channels, atrous_rates, channels),
                         nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, num_classes, 1))


def _backbone(aux):
    body = ref.resnet50(replace_stride_with_dilation=[False, True, True])
    layers = {"layer4": "out", "layer3": "aux"} if aux else {"layer4": "out"}
    return IntermediateLayerGetter(body, layers)


def fcn_resnet50(num_classes=21, aux_loss=False):
    aux = FCNHead(1024, num_classes) if aux_loss else None
    return SimpleSegmentationModel(_backbone(aux_loss), FCNHead(2048, num_classes), aux)


def deeplabv3_resnet50(num_classes=21, aux_loss=False):
    aux = FCNHead(1024, num_classes) if aux_loss else None
    return SimpleSegmentationModel(_backbone(aux_loss), DeepLabHead(2048, num_classes), aux)


class TinyResNet(nn.Module):
    """atrous's tiny backbone: 3x3/2 stem, 3x3/2 max pool, one BasicBlock stage per width;
    a stage that would stride keeps a 1x1 projection shortcut even when it dilates instead."""

    def __init__(self, in_channels=1, widths=(16, 32, 64, 64), dilate=(False, True, True)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin, rate = widths[0], 1
        for i, (w, stride) in enumerate(zip(widths, (1, 2, 2, 2))):
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=1 if i and dilate[i - 1] else stride,
                                               bias=False), nn.BatchNorm2d(w))
            if i and dilate[i - 1]:
                block = ref.BasicBlock(cin, w, 1, down, dilation=rate)
                rate *= 2
            else:
                block = ref.BasicBlock(cin, w, stride, down, dilation=rate)
            setattr(self, f"layer{i + 1}", nn.Sequential(block))
            cin = w

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def deeplabv3_tiny(num_classes=11, dilation=True, rates=(2, 4, 6)):
    body = TinyResNet(dilate=(False, True, True) if dilation else (False, False, False))
    return SimpleSegmentationModel(IntermediateLayerGetter(body, {"layer4": "out"}),
                                   DeepLabHead(64, num_classes, rates, channels=64))


class FCN8s(nn.Module):
    """FCN-8s over a VGG-style ``features`` Sequential and fc6/fc7 convolutions.

    ``pools``: indices of pool3 and pool4 in ``features``; ``offsets``: (pool4, pool3, final).
    """

    def __init__(self, features, fc6, fc7, num_classes, pools, offsets):
        super().__init__()
        self.features = features
        self.fc6, self.relu6, self.drop6 = fc6, nn.ReLU(), nn.Dropout(0.5)
        self.fc7, self.relu7, self.drop7 = fc7, nn.ReLU(), nn.Dropout(0.5)
        k = num_classes
        self.score_fr = nn.Conv2d(fc7.out_channels, k, 1)
        self.score_pool4 = nn.Conv2d(self._channels(pools[1]), k, 1)
        self.score_pool3 = nn.Conv2d(self._channels(pools[0]), k, 1)
        self.upscore2 = nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(k, k, 16, stride=8, bias=False)
        self.pools, self.offsets = pools, offsets

    def _channels(self, index):
        return [m for m in list(self.features)[:index] if isinstance(m, nn.Conv2d)][-1].out_channels

    def forward(self, x):
        h, taps = x, {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            taps[i] = h
        h = self.drop7(self.relu7(self.fc7(self.drop6(self.relu6(self.fc6(h))))))
        h = self.upscore2(self.score_fr(h))
        o = self.offsets[0]
        h = h + self.score_pool4(taps[self.pools[1]])[:, :, o:o + h.shape[2], o:o + h.shape[3]]
        h = self.upscore_pool4(h)
        o = self.offsets[1]
        h = h + self.score_pool3(taps[self.pools[0]])[:, :, o:o + h.shape[2], o:o + h.shape[3]]
        o = self.offsets[2]
        return self.upscore8(h)[:, :, o:o + x.shape[2], o:o + x.shape[3]]


def fcn8s(num_classes=21):
    """Long et al.'s VGG-16 FCN-8s: pad 100, ceil-mode pools, fc6 7x7, offsets 5, 9, 31."""
    vgg = ref.VGG()
    features = vgg.features
    features[0].padding = (100, 100)
    for m in features:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True
    return FCN8s(features, nn.Conv2d(512, 4096, 7), nn.Conv2d(4096, 4096, 1), num_classes,
                 pools=(16, 23), offsets=(5, 9, 31))


def fcn8s_tiny(num_classes=11, in_channels=1, width=16, pad=45):
    """The tiny variant: 5 x (3x3 conv, BN, ReLU, 2x2 pool), fc6 3x3, fc7 1x1, floor pools.

    Offsets by hand, with unit i of a map centred at image coordinate a*i + b:
    conv1 (pad P): b = 1 - P; each 2x2 pool adds a_in/2 and doubles a; the 3x3 convs at
    padding 1 add nothing: pool3 (8, 4.5 - P), pool4 (16, 8.5 - P), pool5 (32, 16.5 - P);
    fc6 (3x3) adds 32: (32, 48.5 - P); a ConvTranspose2d(k, s) maps (a, b) to
    (a/s, b - a(k-1)/(2s)): upscore2 (16, 24.5 - P) -> pool4 crop (24.5 - 8.5)/16 = 1;
    upscore_pool4 (8, 12.5 - P) -> pool3 crop (12.5 - 4.5)/8 = 1; upscore8 (1, 5 - P) ->
    final crop P - 5.
    """
    w, layers, cin = width, [], in_channels
    for i, v in enumerate([w, 2 * w, 4 * w, 8 * w, 8 * w]):
        layers += [nn.Conv2d(cin, v, 3, padding=pad if i == 0 else 1), nn.BatchNorm2d(v),
                   nn.ReLU(), nn.MaxPool2d(2, 2)]
        cin = v
    return FCN8s(nn.Sequential(*layers), nn.Conv2d(8 * w, 16 * w, 3), nn.Conv2d(16 * w, 16 * w, 1),
                 num_classes, pools=(11, 15), offsets=(1, 1, pad - 5))
