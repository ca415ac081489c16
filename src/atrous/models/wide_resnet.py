"""CIFAR-style Wide Residual Networks, WRN-d-k (Zagoruyko & Komodakis, 2016).

A 3x3 stem to 16 channels, then three stages of pre-activation blocks at widths 16k, 32k and
64k (the second and third halve the resolution), then BN-ReLU, global average pooling and a
linear classifier. Depth d = 6n + 4: each stage holds n = (d - 4) / 6 blocks of two 3x3
convolutions. WRN-28-10 has about 36.5M parameters.

    >>> model = wide_resnet(16, 4)       # WRN-16-4: 2 blocks per stage, widths 64/128/256
    >>> model(np.zeros((2, 3, 32, 32), np.float32)).shape  # doctest: +SKIP
    (2, 10)
"""
from __future__ import annotations

from .. import functional as F
from .. import nn
from ..nn import init
from .resnet import init_conv_bn

__all__ = ["WideBasic", "WideResNet", "wide_resnet"]


class WideBasic(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3(stride) - BN-ReLU-[dropout]-conv3x3, plus shortcut.

    When the width or resolution changes, the shortcut is a 1x1 projection of the *activated*
    input (BN-ReLU is shared by both paths, as in the authors' code); otherwise the raw input.

    Shape: (N, in_planes, H, W) -> (N, out_planes, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, in_planes, out_planes, stride=1, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(a)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    """WRN-depth-widen_factor; see the module docstring.

    Shape: (N, 3, H, W) -> (N, num_classes); designed for 32x32 (the last stage is 8x8).
    Attributes: ``conv1``, ``layer1``..``layer3`` (Sequentials of :class:`WideBasic`), ``bn``,
    ``avgpool``, ``fc``.
    """

    def __init__(self, depth, widen_factor, num_classes=10, dropout=0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(
                f"wide_resnet: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40 ...), got {depth}"
            )
        if widen_factor < 1:
            raise ValueError(f"wide_resnet: widen_factor must be >= 1, got {widen_factor}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.layer1 = self._make_layer(widths[0], widths[1], n, 1, dropout)
        self.layer2 = self._make_layer(widths[1], widths[2], n, 2, dropout)
        self.layer3 = self._make_layer(widths[2], widths[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)

        init_conv_bn(self)
        init.constant_(self.fc.bias, 0)

    @staticmethod
    def _make_layer(in_planes, out_planes, blocks, stride, dropout):
        layers = [WideBasic(in_planes, out_planes, stride, dropout)]
        layers += [WideBasic(out_planes, out_planes, 1, dropout) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.avgpool(self.relu(self.bn(x)))
        return self.fc(x.flatten(1))


def wide_resnet(depth, widen_factor, num_classes=10, dropout=0.0):
    """Build WRN-``depth``-``widen_factor`` for CIFAR-sized inputs (see :class:`WideResNet`)."""
    return WideResNet(depth, widen_factor, num_classes=num_classes, dropout=dropout)
