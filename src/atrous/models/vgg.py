"""VGG-16 (Simonyan & Zisserman, configuration D) with torchvision's layout and keys.

``features`` is one Sequential of 3x3 convolutions (padding 1), optional BatchNorm, ReLU and
2x2 max pools, so its indices match torchvision's (``features.0``, ``features.2`` ... without BN;
``features.0``, ``features.1`` (BN), ``features.3`` ... with BN); then ``avgpool`` (adaptive
to 7x7) and ``classifier`` (``classifier.0``, ``.3``, ``.6``). vgg16 has 138,357,544
parameters at 1000 classes, vgg16_bn 138,365,992.

Shape: (N, 3, H, W) -> (N, num_classes) for H, W >= 32 (five 2x2 pools).
"""
from __future__ import annotations

from .. import nn
from ..nn import init

__all__ = ["VGG", "make_layers", "vgg16", "vgg16_bn", "CFG_D"]

# Output channels of each 3x3 convolution; "M" is a 2x2 max pool with stride 2.
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def make_layers(cfg, batch_norm=False, in_channels=3):
    """The ``features`` Sequential for a VGG configuration list (torchvision's ``make_layers``)."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` -> 7x7 adaptive average pool -> three-layer classifier with dropout."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            # torchvision's initialisation.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    init.constant_(m.weight, 1)
                    init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    init.normal_(m.weight, 0, 0.01)
                    init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def vgg16(num_classes=1000, init_weights=True, dropout=0.5):
    """VGG-16 without batch normalisation (138,357,544 parameters at 1000 classes)."""
    return VGG(make_layers(CFG_D), num_classes=num_classes, init_weights=init_weights,
               dropout=dropout)


def vgg16_bn(num_classes=1000, init_weights=True, dropout=0.5):
    """VGG-16 with BatchNorm after every convolution (138,365,992 parameters)."""
    return VGG(make_layers(CFG_D, batch_norm=True), num_classes=num_classes,
               init_weights=init_weights, dropout=dropout)
