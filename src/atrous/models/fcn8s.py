"""FCN-8s (Long, Shelhamer & Darrell, 2015): a classifier made fully convolutional, with skips.

    image -> VGG-16 trunk (conv1_1 padded by 100) ... pool3 (/8) ... pool4 (/16) ... pool5 (/32)
    pool5 -> fc6 (7x7 conv, was Linear 25088->4096) -> fc7 (1x1, was Linear 4096->4096)
          -> score_fr (1x1 to K) -> upscore2 (x2)
          + crop(score_pool4(pool4))   (1x1 to K)  -> upscore_pool4 (x2)
          + crop(score_pool3(pool3))   (1x1 to K)  -> upscore8 (x8) -> crop -> (N, K, H, W)

The trunk and fc6/fc7 come from ``atrous.surgery.fully_convolutional`` applied to a VGG-16
classifier (its Linear layers become convolutions with the same weights); the ImageNet
scoring layer ``classifier.6`` is replaced by ``score_fr``. Coarse scores from deep layers
(what) are fused with finer ones from pool4 and pool3 (where), each step upsampled x2 by a
``ConvTranspose2d`` initialised to bilinear interpolation (``atrous.nn.init.bilinear_``);
the two x2 upsamplers are learned, the final x8 one stays fixed (``requires_grad=False``), as
in the paper. The score layers start at zero, so an untrained skip adds nothing.

Cropping follows Long et al. exactly: conv1_1 pads by 100 pixels so that fc6's 7x7 window
fits on any input, and every map is cropped at the offset that aligns its pixel centres with
the map it is added to. The offsets come from the layers' coordinate maps (Caffe's ``crop``
layer): a layer with kernel k, stride s, padding p, dilation d places output unit i at input
coordinate s*i - p + d*(k-1)/2, a transposed convolution inverts that, and composing the maps
down to the image gives each map's (scale, offset). For VGG-16 they are Long et al.'s
(5, 9, 31): score_pool4 from row 5, score_pool3 from row 9, the final scores from row 31.
The trunk's max pools use ``ceil_mode=True`` as Caffe's do (it keeps the crop inside the
map for every input size).

Keys: ``features.*`` as torchvision's ``vgg16`` (so its weights load), ``fc6``, ``fc7``,
``score_fr``, ``score_pool4``, ``score_pool3``, ``upscore2``, ``upscore_pool4``, ``upscore8``
(the names of the authors' Caffe model). 134,489,759 parameters at 21 classes.

Shape: (N, C, H, W) -> {'out': (N, num_classes, H, W)}, a dict like the other segmentation
models (see :mod:`atrous.models.segmentation`).
"""
from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction

from .. import nn, surgery
from ..nn import init
from ..shape import pair
from .vgg import make_layers, vgg16

__all__ = ["FCN8s", "TinyVGG", "coordinate_map", "fcn8s", "fcn8s_tiny"]


def coordinate_map(layers, start=(Fraction(1), Fraction(0))):
    """Compose the (scale, offset) maps of ``layers`` along one axis: unit i of the last
    layer's output is centred on input coordinate scale * i + offset (pixel p centred at p).

    Conv2d / pools: s*i - p + d*(k-1)/2; ConvTranspose2d (its inverse): (i + p - d*(k-1)/2) / s.
    Other layers (BN, ReLU, Dropout) keep the map. Exact fractions, so offsets compare exactly.

    >>> from atrous import nn
    >>> coordinate_map([nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2)])
    (Fraction(2, 1), Fraction(1, 2))
    """
    scale, offset = start
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = pair(layer.kernel_size)[0]
            s = pair(layer.stride)[0]
            p = layer.padding
            if isinstance(p, str):
                raise ValueError(f"coordinate_map: string padding {p!r} of {layer!r} is not supported")
            p = pair(p)[0]
            d = pair(getattr(layer, "dilation", 1))[0]
            centre = Fraction(d * (k - 1), 2)
            if isinstance(layer, nn.ConvTranspose2d):
                scale, offset = scale / s, offset + scale * (p - centre) / s
            else:
                scale, offset = scale * s, offset + scale * (centre - p)
    return scale, offset


def _crop_offset(source, reference, what):
    """Rows to skip in the map with coordinate map ``source`` so it lines up with ``reference``."""
    if source[0] != reference[0]:
        raise ValueError(f"FCN8s: {what}: maps at strides {source[0]} and {reference[0]} cannot be added")
    c = (reference[1] - source[1]) / source[0]
    if c.denominator != 1 or c < 0:
        raise ValueError(
            f"FCN8s: {what}: the crop offset {c} is not a non-negative integer; pad the first "
            f"convolution more (Long et al. pad by 100)"
        )
    return int(c)


def _crop(x, offset, size, what):
    h, w = x.shape[-2:]
    if offset + size[0] > h or offset + size[1] > w:
        raise ValueError(
            f"FCN8s: {what} is {h}x{w}, too small to crop {size[0]}x{size[1]} at offset {offset}; "
            f"pad the first convolution more"
        )
    return x[:, :, offset:offset + size[0], offset:offset + size[1]]


class FCN8s(nn.Module):
    """FCN-8s over a fully convolutional classifier (see the module docstring).

    ``net``: the result of :func:`atrous.surgery.fully_convolutional` on a Sequential-style
    classifier whose converted head starts fc6 (conv), ReLU, Dropout, fc7 (conv), ReLU,
    Dropout; its trunk's third and fourth max pools are pool3 and pool4. ``pad``: padding of
    the trunk's first convolution (100 in Long et al.); ``ceil_mode`` for the trunk's pools.
    ``offsets``: the crop offsets (pool4, pool3, final), derived from the layers.
    """

    def __init__(self, net, num_classes, pad=100, ceil_mode=True):
        super().__init__()
        head = list(net.classifier)
        kinds = [type(m) for m in head[:6]]
        if kinds != [nn.Conv2d, nn.ReLU, nn.Dropout] * 2:
            raise ValueError(
                f"FCN8s: the converted classifier must start conv, ReLU, Dropout, conv, ReLU, "
                f"Dropout (fc6, fc7), got {[k.__name__ for k in kinds]}"
            )
        self.features = net.features
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"FCN8s: the trunk must have 5 max pools, found {len(pools)}")
        self.features[0].padding = pair(pad, "pad", "FCN8s")
        for i in pools:
            self.features[i].ceil_mode = ceil_mode
        self._pool3, self._pool4 = pools[2], pools[3]
        self.fc6, self.relu6, self.drop6, self.fc7, self.relu7, self.drop7 = head[:6]
        c3 = self._channels_before(self._pool3)
        c4 = self._channels_before(self._pool4)
        K = num_classes
        self.score_fr = nn.Conv2d(self.fc7.out_channels, K, 1)
        self.score_pool4 = nn.Conv2d(c4, K, 1)
        self.score_pool3 = nn.Conv2d(c3, K, 1)
        self.upscore2 = nn.ConvTranspose2d(K, K, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(K, K, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(K, K, 16, stride=8, bias=False)
        for score in (self.score_fr, self.score_pool4, self.score_pool3):
            init.zeros_(score.weight)
            init.zeros_(score.bias)
        for up in (self.upscore2, self.upscore_pool4, self.upscore8):
            init.bilinear_(up.weight)
        self.upscore8.weight.requires_grad_(False)
        self.offsets = self._offsets()

    def _channels_before(self, index):
        convs = [m for m in list(self.features)[:index] if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def _offsets(self):
        trunk = list(self.features)
        pool3 = coordinate_map(trunk[:self._pool3 + 1])
        pool4 = coordinate_map(trunk[:self._pool4 + 1])
        fc7 = coordinate_map([self.fc6, self.fc7], coordinate_map(trunk))
        up2 = coordinate_map([self.upscore2], fc7)
        up4 = coordinate_map([self.upscore_pool4], up2)
        up8 = coordinate_map([self.upscore8], up4)
        image = (Fraction(1), Fraction(0))
        return (_crop_offset(pool4, up2, "score_pool4"), _crop_offset(pool3, up4, "score_pool3"),
                _crop_offset(up8, image, "upscore8"))

    def forward(self, x):
        size = tuple(x.shape[-2:])
        h = x
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == self._pool3:
                pool3 = h
            elif i == self._pool4:
                pool4 = h
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.upscore2(self.score_fr(h))
        h = h + _crop(self.score_pool4(pool4), self.offsets[0], tuple(h.shape[-2:]), "score_pool4")
        h = self.upscore_pool4(h)
        h = h + _crop(self.score_pool3(pool3), self.offsets[1], tuple(h.shape[-2:]), "score_pool3")
        h = _crop(self.upscore8(h), self.offsets[2], size, "upscore8")
        return OrderedDict(out=h)

    def extra_repr(self):
        return f"offsets={self.offsets}"


def fcn8s(num_classes=21, pretrained_backbone_model=None):
    """FCN-8s on VGG-16 (Long et al.): 134,489,759 parameters at 21 classes.

    ``pretrained_backbone_model``: an ``atrous.models.vgg16`` (e.g. with ImageNet weights
    loaded from torchvision's state dict); its trunk and fc6/fc7 are copied through
    ``surgery.fully_convolutional`` (checked against the classifier's scores); the model itself
    is not modified. None builds a freshly initialised VGG-16 first.

    Shape: (N, 3, H, W) -> {'out': (N, num_classes, H, W)}.
    """
    check = pretrained_backbone_model is not None
    vgg = pretrained_backbone_model if check else vgg16()
    net = surgery.fully_convolutional(vgg, (3, 224, 224), check=check)
    return FCN8s(net, num_classes, pad=100, ceil_mode=True)


class TinyVGG(nn.Module):
    """A small VGG-style classifier for ``fcn8s_tiny``: five stages of one 3x3 conv, BN, ReLU
    and a 2x2 max pool (``width`` * 1/2/4/8/8 channels), then a 3-layer classifier
    (``16 * width`` hidden units) over the 3x3 map of a 96x96 image.

    Shape: (N, in_channels, 96, 96) -> (N, num_classes).
    """

    def __init__(self, num_classes=11, in_channels=1, width=16):
        super().__init__()
        w = int(width)
        self.features = make_layers([w, "M", 2 * w, "M", 4 * w, "M", 8 * w, "M", 8 * w, "M"],
                                    batch_norm=True, in_channels=in_channels)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * w * 3 * 3, 16 * w),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(16 * w, 16 * w),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(16 * w, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def fcn8s_tiny(num_classes=11, in_channels=1, width=16, pad=45, pretrained_backbone_model=None):
    """FCN-8s on :class:`TinyVGG` (BN after each conv; fc6 is a 3x3 conv, fc7 1x1), for small
    grey images on a CPU: 646,241 parameters at width 16 and 11 classes.

    The pools stay in floor mode; ``pad=45`` on the first convolution is the least padding
    for which every input size from 8 to 300 crops cleanly (offsets (1, 1, pad - 5)).

    Shape: (N, in_channels, H, W) -> {'out': (N, num_classes, H, W)}.
    """
    check = pretrained_backbone_model is not None
    vgg = pretrained_backbone_model if check else TinyVGG(num_classes, in_channels, width)
    shape = (vgg.features[0].in_channels, 96, 96)
    # The classifier starts with a Flatten, which surgery removes before fc6.
    net = surgery.fully_convolutional(vgg, shape, check=check)
    net.classifier = nn.Sequential(*[m for m in net.classifier if not isinstance(m, nn.Identity)])
    return FCN8s(net, num_classes, pad=pad, ceil_mode=False)
