"""Residual networks (He et al., 2015) with torchvision's module names.

Every attribute is named as in ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc`` ...), so a torchvision ``state_dict``
converted to NumPy arrays loads unchanged::

    >>> from atrous.models import resnet18
    >>> model = resnet18()
    >>> model.load_state_dict({k: v.numpy() for k, v in tv_model.state_dict().items()})  # doctest: +SKIP

Shape: input (N, 3, H, W) -> logits (N, num_classes); the stem and four stages divide H and W
by 32 overall (by 8 with ``replace_stride_with_dilation=[False, True, True]``), and the
adaptive average pool makes the classifier independent of the input size.
"""
from __future__ import annotations

from .. import nn
from ..nn import init

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "conv1x1",
    "conv3x3",
    "resnet18",
    "resnet34",
    "resnet50",
    "wide_resnet50_2",
]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution whose padding equals its dilation, so stride 1 keeps H and W."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution: a per-pixel linear map over channels (projection shortcuts, bottlenecks)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)



def init_conv_bn(model):
    """torchvision's ResNet initialisation, in module order: He-normal (fan_out) convolution
    weights, batch norms at weight 1 and bias 0. The wide and segmentation ResNets use it too."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            init.constant_(m.weight, 1)
            init.constant_(m.bias, 0)

class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the identity (or a projection ``downsample``).

    out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    Shape: (N, inplanes, H, W) -> (N, planes, ceil(H/stride), ceil(W/stride)).
    Unlike torchvision, ``dilation > 1`` is allowed (both convolutions use it), which is what
    DeepLab-style dilated ResNet-18/34 backbones need; the parameters are the same either way.
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"BasicBlock: only groups=1 and base_width=64 are supported, "
                f"got groups={groups}, base_width={base_width}"
            )
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride, dilation=dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, as torchvision's "ResNet V1.5") -> 1x1 expand.

    The 3x3 works on ``width = int(planes * base_width / 64) * groups`` channels; the block
    outputs ``planes * 4``. ``wide_resnet50_2`` is this block with ``base_width=128``.

    Shape: (N, inplanes, H, W) -> (N, 4*planes, ceil(H/stride), ceil(W/stride)).
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max pool), four stages of ``block``, global average pool, fc.

    ``replace_stride_with_dilation``: three booleans for stages 2-4; a True stage keeps its
    input resolution and dilates its 3x3 convolutions instead (the "à trous" trick), so the
    receptive field still grows as if it had strided.
    ``zero_init_residual``: start each block's last BN at gamma = 0 so every residual branch
    begins as the identity (Goyal et al., 2017).
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                f"ResNet: replace_stride_with_dilation should be None or a 3-element sequence, "
                f"got {replace_stride_with_dilation!r}"
            )
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give 4 block counts, got {layers!r}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        init_conv_bn(self)  # fc keeps Linear's default
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            # Trade this stage's stride for dilation; later stages inherit the larger rate.
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        # The first block still sees the previous rate: its input is at the old resolution.
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


def resnet18(**kwargs):
    """ResNet-18: BasicBlock x [2, 2, 2, 2], 11,689,512 parameters at 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
    """ResNet-34: BasicBlock x [3, 4, 6, 3], 21,797,672 parameters at 1000 classes."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
    """ResNet-50: Bottleneck x [3, 4, 6, 3], 25,557,032 parameters at 1000 classes."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def wide_resnet50_2(**kwargs):
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide (68,883,240 parameters)."""
    kwargs["width_per_group"] = 64 * 2
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)
