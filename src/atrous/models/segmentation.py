"""Semantic segmentation: FCN and DeepLabv3 heads on dilated ResNets, with torchvision's names.

A segmentation model labels every pixel. The recipe (Long et al. 2015; Chen et al. 2017):

1. a classification backbone whose last stages trade their stride for dilation
   (``replace_stride_with_dilation=[False, True, True]``): the feature map stays at 1/8 of the
   input instead of 1/32 with exactly the same weights, and the receptive field keeps
   growing (a little less than with strides: a dilated stage's first block keeps the previous
   rate, as torchvision does; 143 vs 191 pixels for the tiny backbone);
2. a head that maps features to one score per class per position: ``FCNHead`` (3x3 conv, BN,
   ReLU, dropout, 1x1 conv) or ``DeepLabHead`` (ASPP: a 1x1 branch, three 3x3 branches at
   growing dilation rates and an image-pooling branch, concatenated and projected);
3. bilinear upsampling (``align_corners=False``) of the scores back to the input size.

``fcn_resnet50`` and ``deeplabv3_resnet50`` build torchvision's models: the same module
names (``backbone.layer4.2.conv3.weight``, ``classifier.0.convs.1.0.weight``,
``aux_classifier.4.bias`` ...), shapes and parameter counts, so a torchvision ``state_dict``
converted to NumPy arrays loads unchanged. They return ``{'out': (N, K, H, W)}`` plus
``'aux'`` (an FCN head on ``layer3``) when ``aux_loss=True``.

``deeplabv3_tiny`` and ``fcn_tiny`` put the same heads on a small ResNet (BasicBlocks of
16/32/64/64 channels at ``width=16``) that trains on 64x64 canvases in minutes on two CPU
cores. Their switches are the ablation arms of the receptive-field experiment:

============================  ============  ===================================================
arm                           output stride head
============================  ============  ===================================================
``dilation=True, aspp=True``  8             ASPP, rates ``atrous_rates`` (default 2, 4, 6)
``dilation=False, aspp=True`` 32            the same ASPP on a 4x smaller map
``dilation=True, aspp=False`` 8             ``PlainHead``: 3x3 convs at rate 1, no pooling
``dilation=False, aspp=False`` 32           ``PlainHead``
============================  ============  ===================================================

``dilation`` never changes the parameters (only strides become dilations); ``aspp=False``
swaps the head for a serial stack of plain 3x3 convolutions of about the same size (see
:class:`PlainHead`), so the arms differ in what the network sees, not in how much it has.

    >>> model = deeplabv3_tiny(num_classes=11)
    >>> import numpy as np
    >>> model.eval()(np.zeros((2, 1, 64, 64), np.float32))["out"].shape
    (2, 11, 64, 64)
"""
from __future__ import annotations

from collections import OrderedDict

from .. import nn
from ..functional import cat, interpolate
from .resnet import BasicBlock, conv1x1, init_conv_bn, resnet50

__all__ = [
    "ASPP",
    "ASPPConv",
    "ASPPPooling",
    "DeepLabHead",
    "DeepLabV3",
    "FCN",
    "FCNHead",
    "IntermediateLayerGetter",
    "PlainHead",
    "SEGMENTATION_MODELS",
    "TinyResNet",
    "deeplabv3_resnet50",
    "deeplabv3_tiny",
    "fcn_resnet50",
    "fcn_tiny",
    "get_segmentation_model",
    "list_segmentation_models",
]


class IntermediateLayerGetter(nn.ModuleDict):
    """The children of ``model`` up to the last one named in ``return_layers``, run in order.

    ``return_layers`` maps a child's name to the key its output is returned under, e.g.
    ``{'layer4': 'out', 'layer3': 'aux'}``. The children keep their names, so the keys read
    ``backbone.conv1.weight`` and ``backbone.layer1.0.conv1.weight`` as in torchvision; the
    classifier's ``avgpool`` and ``fc`` after the last returned layer are dropped.

    Shape: (N, C, H, W) -> OrderedDict of the requested feature maps.
    """

    def __init__(self, model, return_layers):
        names = [name for name, _ in model.named_children()]
        missing = set(return_layers) - set(names)
        if missing:
            raise ValueError(
                f"IntermediateLayerGetter: return_layers {sorted(missing)} are not children of "
                f"{type(model).__name__} (children: {names})"
            )
        wanted = dict(return_layers)
        layers = OrderedDict()
        remaining = set(wanted)
        for name, module in model.named_children():
            layers[name] = module
            remaining.discard(name)
            if not remaining:
                break
        super().__init__(layers)
        self.return_layers = wanted

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class _SimpleSegmentationModel(nn.Module):
    """backbone -> classifier (and aux_classifier) -> bilinear upsampling to the input size.

    Shape: (N, C, H, W) -> {'out': (N, K, H, W)} and 'aux' (N, K, H, W) when the model has an
    ``aux_classifier``.
    """

    def __init__(self, backbone, classifier, aux_classifier=None):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x):
        size = tuple(x.shape[-2:])
        features = self.backbone(x)
        result = OrderedDict()
        y = self.classifier(features["out"])
        result["out"] = interpolate(y, size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is not None:
            y = self.aux_classifier(features["aux"])
            result["aux"] = interpolate(y, size=size, mode="bilinear", align_corners=False)
        return result


class FCN(_SimpleSegmentationModel):
    """A fully convolutional network: backbone + :class:`FCNHead` (Long et al., 2015)."""


class DeepLabV3(_SimpleSegmentationModel):
    """DeepLabv3: dilated backbone + :class:`DeepLabHead` with ASPP (Chen et al., 2017)."""


class FCNHead(nn.Sequential):
    """3x3 conv to ``in_channels // 4`` (no bias), BN, ReLU, Dropout(0.1), 1x1 conv to ``channels``.

    Shape: (N, in_channels, h, w) -> (N, channels, h, w).
    """

    def __init__(self, in_channels, channels):
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, channels, 1),
        )


class ASPPConv(nn.Sequential):
    """One atrous branch: 3x3 conv at ``dilation`` (padding = dilation keeps h, w), BN, ReLU."""

    def __init__(self, in_channels, out_channels, dilation):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image-level context: global average pool, 1x1 conv, BN, ReLU, then bilinear
    upsampling of the 1x1 result back to (h, w), i.e. the same vector at every position.

    Shape: (N, in_channels, h, w) -> (N, out_channels, h, w). In training mode it needs
    N > 1 (BatchNorm over a single 1x1 value per channel), as in PyTorch.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        size = tuple(x.shape[-2:])
        for module in self:
            x = module(x)
        return interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel views of the same map at several scales.

    ``convs``: a 1x1 branch, one :class:`ASPPConv` per rate in ``atrous_rates`` and an
    :class:`ASPPPooling` branch, each to ``out_channels``; their concatenation is projected
    by ``project`` (1x1 conv, BN, ReLU, Dropout(0.5)) back to ``out_channels``. A 3x3 branch
    at rate r sees a (2r+1)x(2r+1) neighbourhood with 9 weights per channel pair.

    Shape: (N, in_channels, h, w) -> (N, out_channels, h, w).
    """

    def __init__(self, in_channels, atrous_rates, out_channels=256):
        super().__init__()
        rates = tuple(int(r) for r in atrous_rates)
        if not rates or min(rates) < 1:
            raise ValueError(f"ASPP: atrous_rates must be positive integers, got {atrous_rates!r}")
        modules = [nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )]
        modules += [ASPPConv(in_channels, out_channels, rate) for rate in rates]
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(
            nn.Conv2d(len(modules) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x):
        return self.project(cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """ASPP, 3x3 conv (no bias), BN, ReLU, 1x1 conv to ``num_classes`` (torchvision's layout:
    ``classifier.0`` is the ASPP, ``classifier.4`` the scoring conv).

    Shape: (N, in_channels, h, w) -> (N, num_classes, h, w).
    """

    def __init__(self, in_channels, num_classes, atrous_rates=(12, 24, 36), channels=256):
        super().__init__(
            ASPP(in_channels, atrous_rates, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )


class PlainHead(nn.Sequential):
    """The no-ASPP ablation arm: ``layers`` x (3x3 conv at rate 1, BN, ReLU), 1x1 scoring conv.

    A serial stack, so its view grows by 2 positions per layer (9x9 positions for 4 layers)
    instead of ASPP's (2r+1) per branch plus the whole image. With ``layers=4`` and
    ``channels = in_channels`` it has ~84% of a :class:`DeepLabHead`'s parameters with
    three rates at the same width (148,683 vs 177,739 at 64 channels and 11 classes).

    Shape: (N, in_channels, h, w) -> (N, num_classes, h, w).
    """

    def __init__(self, in_channels, num_classes, channels=256, layers=4):
        modules = []
        for i in range(layers):
            modules += [
                nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
        modules.append(nn.Conv2d(channels if layers else in_channels, num_classes, 1))
        super().__init__(*modules)


# ----- torchvision's ResNet-50 models ------------------------------------------------------
def _resnet50_backbone(aux):
    backbone = resnet50(replace_stride_with_dilation=[False, True, True])
    return_layers = {"layer4": "out", "layer3": "aux"} if aux else {"layer4": "out"}
    return IntermediateLayerGetter(backbone, return_layers)


def fcn_resnet50(num_classes=21, aux_loss=False):
    """FCN-ResNet50 as torchvision: dilated ResNet-50 (output stride 8), ``FCNHead(2048, K)``,
    ``aux_classifier = FCNHead(1024, K)`` on layer3 when ``aux_loss``.

    35,322,218 parameters at 21 classes with the aux head (32,957,013 without).
    Shape: (N, 3, H, W) -> {'out': (N, K, H, W)[, 'aux': (N, K, H, W)]}.
    """
    aux = FCNHead(1024, num_classes) if aux_loss else None
    return FCN(_resnet50_backbone(aux_loss), FCNHead(2048, num_classes), aux)


def deeplabv3_resnet50(num_classes=21, aux_loss=False):
    """DeepLabv3-ResNet50 as torchvision: dilated ResNet-50 (output stride 8),
    ``DeepLabHead(2048, K)`` with ASPP rates 12/24/36, ``aux_classifier = FCNHead(1024, K)``
    on layer3 when ``aux_loss``.

    42,004,074 parameters at 21 classes with the aux head (39,638,869 without).
    Shape: (N, 3, H, W) -> {'out': (N, K, H, W)[, 'aux': (N, K, H, W)]}.
    """
    aux = FCNHead(1024, num_classes) if aux_loss else None
    return DeepLabV3(_resnet50_backbone(aux_loss), DeepLabHead(2048, num_classes), aux)


# ----- tiny models for small images on a CPU -----------------------------------------------
class TinyResNet(nn.Module):
    """A small ResNet with torchvision's layout, for 32-128 pixel images.

    conv1 (3x3, stride 2, ``widths[0]`` channels), bn1, relu, maxpool (3x3, stride 2), then
    ``layer1``..``layer4`` of BasicBlocks with ``widths`` channels and ``depth`` blocks each;
    layers 2-4 stride 2, or dilate instead where ``replace_stride_with_dilation`` says so
    (exactly as :class:`atrous.models.ResNet`). Output stride 32, 16 or 8; the parameters do
    not depend on ``replace_stride_with_dilation``. There is no classifier: it is a backbone.

    Shape: (N, in_channels, H, W) -> (N, widths[3], ceil(H / os), ceil(W / os)) roughly (each
    stride-2 step rounds up).
    """

    def __init__(self, in_channels=1, widths=(16, 32, 64, 64), depth=1,
                 replace_stride_with_dilation=None):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        depths = (depth,) * 4 if isinstance(depth, int) else tuple(int(d) for d in depth)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"TinyResNet: widths must be 4 positive ints, got {widths!r}")
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"TinyResNet: depth must be a positive int or 4 of them, got {depth!r}")
        dilate = list(replace_stride_with_dilation or (False, False, False))
        if len(dilate) != 3:
            raise ValueError(
                f"TinyResNet: replace_stride_with_dilation should be None or 3 booleans, "
                f"got {replace_stride_with_dilation!r}"
            )
        self.inplanes, self.dilation = widths[0], 1
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], depths[0])
        self.layer2 = self._make_layer(widths[1], depths[1], 2, dilate[0])
        self.layer3 = self._make_layer(widths[2], depths[2], 2, dilate[1])
        self.layer4 = self._make_layer(widths[3], depths[3], 2, dilate[2])
        init_conv_bn(self)

    def _make_layer(self, planes, blocks, stride=1, dilate=False):
        previous = self.dilation
        # A stage that would stride gets a 1x1 projection shortcut whether or not it dilates
        # instead (torchvision's rule looks at the stride after the swap, which would drop the
        # projection of an equal-width dilated stage and change the parameter count).
        project = stride != 1 or self.inplanes != planes
        if dilate:
            # The stage keeps its input's resolution; its 3x3s (and later stages') dilate.
            self.dilation *= stride
            stride = 1
        downsample = None
        if project:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, dilation=previous)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# Which of layers 2-4 trade their stride for dilation, for each output stride.
TINY_DILATION = {4: [True, True, True], 8: [False, True, True], 16: [False, False, True],
                 32: [False, False, False]}


def _tiny_dilation(dilation, output_stride):
    if output_stride is None:
        return TINY_DILATION[8 if dilation else 32]
    if output_stride not in TINY_DILATION:
        raise ValueError(f"tiny segmentation model: output_stride must be one of "
                         f"{sorted(TINY_DILATION)}, got {output_stride!r}")
    return TINY_DILATION[output_stride]


def _tiny_backbone(in_channels, width, depth, dilate, aux):
    widths = (width, 2 * width, 4 * width, 4 * width)
    body = TinyResNet(in_channels, widths, depth, replace_stride_with_dilation=dilate)
    return_layers = {"layer4": "out", "layer3": "aux"} if aux else {"layer4": "out"}
    return IntermediateLayerGetter(body, return_layers), widths


def deeplabv3_tiny(num_classes=11, dilation=True, aspp=True, width=16, depth=1, in_channels=1,
                   atrous_rates=None, aux_loss=False, output_stride=None):
    """DeepLabv3 on a :class:`TinyResNet` (widths w/2w/4w/4w, ``depth`` blocks per stage).

    ``dilation``: layers 3-4 dilate (output stride 8) instead of striding (32); same
    parameters. ``output_stride`` (4, 8, 16 or 32) overrides it: 4 dilates layers 2-4 too,
    which is what small digit strokes need (see docs/segmentation.md). ``atrous_rates``
    default to 2/4/6 at output stride 8 and above, and 4/8/12 at 4, so they span the same
    number of input pixels. ``aspp``: a :class:`DeepLabHead` with ``atrous_rates`` (default 2/4/6,
    suited to the 8x8 map of a 64x64 input; torchvision's 12/24/36 are for 65x65 maps) and
    4w channels, or (False) a :class:`PlainHead` of four 3x3 convs at 4w channels.
    ``aux_loss`` adds an :class:`FCNHead` on layer3. ``in_channels`` is 1 for grey images.

    333,051 parameters at width 16, 11 classes, with ASPP (303,995 with the plain head):
    a 155,312-parameter backbone and a 177,739-parameter head.
    Shape: (N, in_channels, H, W) -> {'out': (N, num_classes, H, W)[, 'aux': ...]}.
    """
    dilate = _tiny_dilation(dilation, output_stride)
    if atrous_rates is None:
        atrous_rates = (4, 8, 12) if dilate[0] else (2, 4, 6)
    backbone, widths = _tiny_backbone(in_channels, width, depth, dilate, aux_loss)
    if aspp:
        head = DeepLabHead(widths[3], num_classes, atrous_rates, channels=widths[3])
    else:
        head = PlainHead(widths[3], num_classes, channels=widths[3])
    aux = FCNHead(widths[2], num_classes) if aux_loss else None
    return DeepLabV3(backbone, head, aux)


def fcn_tiny(num_classes=11, dilation=True, width=16, depth=1, in_channels=1, aux_loss=False,
             output_stride=None):
    """FCN (``FCNHead``) on the same :class:`TinyResNet` as :func:`deeplabv3_tiny`.

    Shape: (N, in_channels, H, W) -> {'out': (N, num_classes, H, W)[, 'aux': ...]}.
    """
    backbone, widths = _tiny_backbone(in_channels, width, depth,
                                      _tiny_dilation(dilation, output_stride), aux_loss)
    aux = FCNHead(widths[2], num_classes) if aux_loss else None
    return FCN(backbone, FCNHead(widths[3], num_classes), aux)


def _fcn8s(**kwargs):
    """FCN-8s on VGG-16 (see :mod:`atrous.models.fcn8s`)."""
    from .fcn8s import fcn8s  # noqa: PLC0415 (imported late: fcn8s.py builds on VGG and surgery)

    return fcn8s(**kwargs)


def _fcn8s_tiny(**kwargs):
    """A small FCN-8s (see :mod:`atrous.models.fcn8s`)."""
    from .fcn8s import fcn8s_tiny  # noqa: PLC0415

    return fcn8s_tiny(**kwargs)


# Names the training command and the ablation use; every constructor takes keywords only.
SEGMENTATION_MODELS = {
    "deeplab_tiny": deeplabv3_tiny,
    "deeplabv3_resnet50": deeplabv3_resnet50,
    "deeplabv3_tiny": deeplabv3_tiny,
    "fcn8s": _fcn8s,
    "fcn8s_tiny": _fcn8s_tiny,
    "fcn_resnet50": fcn_resnet50,
    "fcn_tiny": fcn_tiny,
}


def list_segmentation_models():
    """Names accepted by :func:`get_segmentation_model`, sorted."""
    return sorted(SEGMENTATION_MODELS)


def get_segmentation_model(name, **kwargs):
    """Build the segmentation model ``name`` (a key of ``SEGMENTATION_MODELS``) with
    ``kwargs`` passed to its constructor; it returns a dict with ``'out'`` (and ``'aux'``).

    >>> model = get_segmentation_model("deeplab_tiny", num_classes=11, dilation=False)
    """
    try:
        constructor = SEGMENTATION_MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"get_segmentation_model: unknown model {name!r}; available: "
            f"{', '.join(list_segmentation_models())}"
        ) from None
    return constructor(**kwargs)
