"""FC-to-conv surgery: turn a classifier's Linear layers into convolutions, for dense scoring.

A Linear layer that reads a flattened C x kh x kw feature map is a convolution whose kernel
is that whole map: reshape its weight (out, C*kh*kw) to (out, C, kh, kw) (flatten's (C, H, W)
order) and it computes the same numbers. Later Linear layers read one vector per position,
so they become 1x1 convolutions. The converted network no longer needs a fixed input size:
on an image larger than the training size the first "FC" convolution slides over the
trunk's feature map, and every position of the output is the classifier's score for one
window of the image, all computed in one pass that shares the trunk's work between windows.

    >>> from atrous import models, surgery
    >>> net = surgery.fully_convolutional(models.lenet5(), (1, 32, 32))
    >>> net.stride, net.kernel_size          # trunk's total stride, the first conv's kernel
    ((4, 4), (5, 5))
    >>> tuple(net(np.zeros((1, 1, 48, 48), np.float32)).shape)  # 5x5 windows at stride 4
    (1, 10, 5, 5)

The classic numbers (VGG-16, trained on 224x224): a 384x384 image gives a 12x12x512 trunk
map (384 / 32), the 7x7 "FC" convolution slides over it to a 6x6 map of scores
(12 - 7 + 1), one for each 224x224 window at stride 32, (384 - 224) / 32 + 1 = 6.

Exactly what the score at (i, j) equals:

* always: the original classifier applied to the (kh, kw) block of the trunk's map at
  (i, j), i.e. the original network's head on the features of the window at (i*S, j*S);
* when the trunk has no padding and no ceil-mode pooling (``exact_crops``, e.g. LeNet-5 at
  32x32): also the original network run on that window cut out as a separate image. With
  zero padding (VGG, AlexNet, the digits CNN) a separately cut window sees zeros at its
  border where the big image has real pixels, so the crop's scores differ from the dense
  ones near every window border (the dense score sees the window in its context).

An adaptive average pool between the trunk and the classifier (torchvision's ``avgpool``,
7x7 for VGG, 6x6 for AlexNet) is the identity at the training size (each output bin is
one input pixel) and is removed; kept, it would squash a larger map back to 7x7 and the
convolution could not slide. If the pool is not the identity at ``input_shape`` (the trunk
gives a different size there), conversion raises: pass the size the model was trained at.
"""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict

import numpy as np

from . import nn
from .autograd import no_grad
from .backend import get_array_module
from .shape import pair
from .tensor import Tensor

__all__ = ["FullyConvolutional", "fully_convolutional", "total_stride", "crop_scores"]

# Layers that act position by position on a map and may sit in the trunk.
_TRUNK = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.LocalResponseNorm,
          nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity)
# Element- or channel-wise layers that work the same on (N, F) and on (N, F, H, W)
# (PReLU's weights are along dim 1 in both).
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Dropout,
              nn.Identity)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_HEAD_START = (nn.Flatten, nn.Linear) + _ADAPTIVE


class FullyConvolutional(nn.Module):
    """A classifier whose Linear layers have become convolutions (see :func:`fully_convolutional`).

    ``features`` is a copy of the original trunk (same keys), ``classifier`` the converted
    head (same keys and positions: Flatten, and an adaptive pool inside the classifier,
    become ``Identity``; the zoo's separate ``avgpool`` is dropped). Attributes:
    ``input_shape`` (C, H, W) it was trained at, ``window`` (H, W), ``stride`` (SH, SW) the
    trunk's total stride, ``kernel_size`` the trunk's map at the training size (the first
    conv's kernel), ``exact_crops`` (whether scores equal separately cut windows exactly).

    Shape:
        (N, C, H, W) -> (N, classes, (H' - kh) + 1, (W' - kw) + 1) where (H', W') is the
        trunk's map for (H, W); at the training size (N, classes, 1, 1). Score (i, j) belongs
        to the window whose top-left corner is (i * SH, j * SW).
    """

    def __init__(self, features, classifier, input_shape, stride, kernel_size, exact_crops):
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.input_shape = tuple(input_shape)
        self.window = tuple(input_shape[1:])
        self.stride = stride
        self.kernel_size = kernel_size
        self.exact_crops = exact_crops

    def forward(self, x):
        return self.classifier(self.features(x))

    def extra_repr(self):
        return (f"window={self.window}, stride={self.stride}, kernel_size={self.kernel_size}, "
                f"exact_crops={self.exact_crops}")


def _describe(module):
    return "Sequential" if isinstance(module, nn.Sequential) else type(module).__name__


def _split(model):
    """(trunk items, pool items, head items, layout) for a supported model.

    Two layouts: the zoo's (children ``features``, optional adaptive ``avgpool``,
    ``classifier``; forward flattens before the classifier) and a plain ``nn.Sequential``
    split before its first Flatten, Linear or adaptive pool.
    """
    names = [name for name, _ in model.named_children()]
    if not isinstance(model, nn.Sequential):
        children = dict(model.named_children())
        if names not in (["features", "classifier"], ["features", "avgpool", "classifier"]) or not (
            isinstance(children["features"], nn.Sequential)
            and isinstance(children["classifier"], nn.Sequential)
        ):
            found = ", ".join(f"{n}: {_describe(m)}" for n, m in model.named_children())
            raise ValueError(
                f"fully_convolutional: {type(model).__name__} is not Sequential-style; expected an "
                f"nn.Sequential or children features (Sequential), optional avgpool and "
                f"classifier (Sequential), found [{found}]"
            )
        trunk = list(children["features"]._modules.items())
        head = list(children["classifier"]._modules.items())
        pool = [("avgpool", children["avgpool"])] if "avgpool" in children else []
        return trunk, pool, head, "zoo"
    items = list(model._modules.items())
    for k, (_, module) in enumerate(items):
        if _in_head(module):
            return items[:k], [], items[k:], "sequential"
    raise ValueError(
        f"fully_convolutional: found no Flatten, Linear or adaptive pool in the Sequential "
        f"[{', '.join(_describe(m) for _, m in items)}]; there is no classifier to convert"
    )


def _in_head(module):
    if isinstance(module, _HEAD_START):
        return True
    return isinstance(module, nn.Sequential) and any(_in_head(m) for m in module)


def _trunk_layers(items, where="trunk"):
    """Every leaf layer of the trunk, in order; rejects layers that do not slide."""
    layers = []
    for name, module in items:
        if isinstance(module, nn.Sequential):
            layers += _trunk_layers(module._modules.items(), f"{where}.{name}" if where else name)
        elif isinstance(module, _TRUNK):
            layers.append(module)
        else:
            raise ValueError(
                f"fully_convolutional: {where + '.' if where else 'layer '}{name} is a "
                f"{type(module).__name__}, which the "
                f"convolutional trunk cannot hold (supported: "
                f"{', '.join(t.__name__ for t in _TRUNK)})"
            )
    return layers


def total_stride(model):
    """The trunk's total stride (SH, SW): the product of its convolutions' and pools' strides.

    ``model`` is a supported classifier (see :func:`fully_convolutional`) or its converted
    version; moving the input window by this many pixels moves the trunk's map by one.
    Strides are layer settings, so no input size is needed.

    >>> from atrous import models
    >>> total_stride(models.lenet5()), total_stride(models.alexnet())
    ((4, 4), (32, 32))
    """
    if isinstance(model, FullyConvolutional):
        return model.stride
    trunk = _split(model)[0]
    sh = sw = 1
    for layer in _trunk_layers(trunk):
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            s = pair(layer.stride, "stride", type(layer).__name__)
            sh, sw = sh * s[0], sw * s[1]
    return (sh, sw)


def _exact_crops(layers):
    """True when no trunk layer pads or pools in ceil mode: then a window's trunk map is a
    block of the whole image's map, value for value."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if layer.padding not in ((0, 0), "valid"):
                return False
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            if pair(layer.padding) != (0, 0) or layer.ceil_mode:
                return False
    return True


class _HeadState:
    def __init__(self, shape):
        self.shape = shape  # (C, h, w) of the map entering the next layer
        self.flattened = False
        self.linears = 0


def _linear_to_conv(linear, state, where):
    c, kh, kw = state.shape
    if linear.in_features != c * kh * kw:
        raise ValueError(
            f"fully_convolutional: {where} is Linear(in_features={linear.in_features}) but the "
            f"map entering it is {c}x{kh}x{kw} = {c * kh * kw} values at this input_shape"
        )
    w = linear.weight
    conv = nn.Conv2d(c, linear.out_features, (kh, kw), bias=linear.bias is not None, dtype=w.dtype)
    # Flatten ordered the map as (C, H, W), so a weight row unflattens to one (C, kh, kw) kernel.
    conv.weight.data[...] = w.data.reshape(linear.out_features, c, kh, kw)
    conv.weight.requires_grad_(w.requires_grad)
    if linear.bias is not None:
        conv.bias.data[...] = linear.bias.data
        conv.bias.requires_grad_(linear.bias.requires_grad)
    conv.train(linear.training)
    state.shape, state.linears = (linear.out_features, 1, 1), state.linears + 1
    return conv


def _identity_for(module):
    new = nn.Identity()
    new.training = module.training
    return new


def _convert_head(items, state, where):
    out = OrderedDict()
    for name, module in items:
        here = f"{where}.{name}" if where else f"layer {name!r}"
        if isinstance(module, nn.Sequential):
            out[name] = nn.Sequential(_convert_head(module._modules.items(), state, here))
            out[name].training = module.training
        elif isinstance(module, _ADAPTIVE):
            if state.flattened or state.linears:
                raise ValueError(
                    f"fully_convolutional: {here} ({module!r}) comes after the flatten")
            c, h, w = state.shape
            size = module.output_size
            size = (size, size) if isinstance(size, int) else tuple(size)
            size = (size[0] or h, size[1] or w)
            if size != (h, w):
                raise ValueError(
                    f"fully_convolutional: {here} ({module!r}) resizes the trunk's {h}x{w} map to "
                    f"{size[0]}x{size[1]} at the given input_shape, so it is not the identity "
                    f"there and cannot be dropped; pass the input size the model was trained at "
                    f"(one whose trunk map is {size[0]}x{size[1]})"
                )
            # The identity here; removed so the convolution can slide on larger maps (an
            # Identity keeps the Sequential's positions equal to the original's).
            out[name] = _identity_for(module)
        elif isinstance(module, nn.Flatten):
            if state.linears or (module.start_dim, module.end_dim) != (1, -1):
                raise ValueError(
                    f"fully_convolutional: {here} is {module!r}; only Flatten(1, -1) before the "
                    f"first Linear can be removed"
                )
            state.flattened = True
            out[name] = _identity_for(module)
        elif isinstance(module, nn.Linear):
            if not state.flattened:
                raise ValueError(
                    f"fully_convolutional: {here} is a Linear applied to a 4-D map without a "
                    f"Flatten before it (it would act on the last axis only)"
                )
            out[name] = _linear_to_conv(module, state, here)
        elif isinstance(module, _POINTWISE):
            out[name] = copy.deepcopy(module)
        elif isinstance(module, (nn.Softmax, nn.LogSoftmax)) and module.dim in (None, 1, -1):
            # Along the features of (N, F) is along the channels of (N, F, H, W).
            new = type(module)(dim=1)
            new.training = module.training
            out[name] = new
        else:
            raise ValueError(
                f"fully_convolutional: {here} is {module!r}, which the classifier cannot hold "
                f"(supported: Flatten, Linear, an adaptive pool before them, "
                f"{', '.join(t.__name__ for t in _POINTWISE)}, Softmax/LogSoftmax over dim 1)"
            )
    return out


def _param_dtype(model):
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def fully_convolutional(model, input_shape, check=True):
    """A new model whose Linear layers are convolutions, for scoring every window at once.

    ``model``: a Sequential-style classifier: an ``nn.Sequential`` (trunk layers, then
    Flatten / adaptive pool, Linear, activations, Dropout) or the zoo's layout (``features``,
    optional ``avgpool``, ``classifier``, as alexnet, vgg16, vgg16_bn, lenet5, digits_cnn).
    ``input_shape``: (C, H, W), the size it was trained at; the trunk is run once at this
    size to find its map (C, kh, kw), which becomes the first convolution's kernel.
    The first Linear becomes Conv2d(C, out, (kh, kw)), later ones 1x1 convolutions, with
    weights copied exactly; Flatten and the (identity-at-this-size) adaptive pool are
    removed (an ``Identity`` holds their place inside a Sequential, so ``classifier[k]``
    is still the k-th layer); ReLU, Dropout and the like are kept. ``model`` itself is
    not modified.

    ``check`` (default True): run both networks in eval mode on one random input of
    ``input_shape`` and raise if the scores differ (it catches a model whose ``forward``
    is not features -> avgpool -> flatten -> classifier); it costs one forward pass.

    Shape:
        returned model: (N, C, H, W) -> (N, classes, H' - kh + 1, W' - kw + 1), (H', W')
        the trunk's map; (N, classes, 1, 1) at the training size. See
        :class:`FullyConvolutional` and the module docstring for what the scores equal.

    >>> from atrous import models
    >>> net = fully_convolutional(models.digits_cnn(), (1, 8, 8))
    >>> net.kernel_size, net.stride
    ((2, 2), (4, 4))

    Raises ValueError naming the layer for anything else (a ResNet, a Linear without a
    Flatten before it, an adaptive pool that is not the identity at ``input_shape``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"fully_convolutional: model must be an atrous.nn.Module, got {type(model).__name__}")
    try:
        input_shape = tuple(int(v) for v in input_shape)
    except TypeError:
        raise TypeError(
            f"fully_convolutional: input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"fully_convolutional: input_shape must be (C, H, W) positive, got {input_shape}")
    trunk_items, pool_items, head_items, layout = _split(model)
    layers = _trunk_layers(trunk_items, "features" if layout == "zoo" else "")
    if not layers:
        raise ValueError(
            "fully_convolutional: the model has no convolutional trunk before its classifier")
    if layout == "zoo":
        features = copy.deepcopy(model.features)
    else:
        features = nn.Sequential(OrderedDict((k, copy.deepcopy(m)) for k, m in trunk_items))

    classifier_mode = model.classifier.training if layout == "zoo" else model.training
    if layout != "zoo":
        features.training = model.training

    # Trace the trunk at the training size, in eval mode so BatchNorm uses its running stats.
    dtype = _param_dtype(model)
    x = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(dtype)
    with _eval_mode(features), no_grad():
        fmap = np.asarray(features(x))
    state = _HeadState(tuple(fmap.shape[1:]))
    _convert_head(pool_items, state, "")  # checks the avgpool is the identity; dropped
    # The zoo's forward flattens between avgpool and classifier.
    state.flattened = state.flattened or layout == "zoo"
    classifier = nn.Sequential(
        _convert_head(head_items, state, "classifier" if layout == "zoo" else ""))
    classifier.training = classifier_mode
    if not state.linears:
        raise ValueError("fully_convolutional: found no Linear layer after the trunk")
    if check:
        with _eval_mode(model, classifier), no_grad():
            got = np.asarray(classifier(fmap)).reshape(-1)
            want = np.asarray(model(x)).reshape(-1)
        scale = max(float(np.abs(want).max()), 1e-30) if want.size else 1.0
        if want.shape != got.shape or np.abs(want - got).max() > 1e-3 * scale:
            raise ValueError(
                f"fully_convolutional: the converted {type(model).__name__} does not "
                f"reproduce the original's scores at input {input_shape} (is its forward "
                f"features -> avgpool -> flatten -> classifier?)"
            )
    net = FullyConvolutional(features, classifier, input_shape, total_stride(model),
                             tuple(fmap.shape[2:]), _exact_crops(layers))
    net.training = model.training
    return net


@contextlib.contextmanager
def _eval_mode(*modules):
    """Every layer in eval mode for the duration, then each back to its own mode."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for m, _ in modes:
            m.training = False
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def crop_scores(model, image, window, stride):
    """Run ``model`` separately on every window of ``image``: the slow way, for comparison.

    ``image`` (N, C, H, W); ``window`` (wh, ww) or an int; ``stride`` (sh, sw) or an int.
    The window at (i, j) has its top-left corner at (i * sh, j * sw); positions run while
    the window fits. Each window is one forward pass of ``model`` (in whatever mode it is;
    call ``model.eval()`` first), without recording gradients.

    Shape:
        (N, C, H, W) -> (N, classes, (H - wh) // sh + 1, (W - ww) // sw + 1).

    >>> from atrous import models
    >>> crop_scores(models.lenet5().eval(), np.zeros((1, 1, 48, 48), np.float32), 32, 4).shape
    (1, 10, 5, 5)
    """
    data = image.data if isinstance(image, Tensor) else image
    shape = tuple(getattr(data, "shape", np.shape(data)))
    wh, ww = pair(window, "window", "crop_scores")
    sh, sw = pair(stride, "stride", "crop_scores")
    if len(shape) != 4:
        raise ValueError(f"crop_scores: image must be (N, C, H, W), got shape {shape}")
    if min(wh, ww, sh, sw) < 1:
        raise ValueError(
            f"crop_scores: window and stride must be positive, got {(wh, ww)}, {(sh, sw)}")
    H, W = shape[2:]
    if wh > H or ww > W:
        raise ValueError(f"crop_scores: window {(wh, ww)} does not fit in the image's {H}x{W}")
    OH, OW = (H - wh) // sh + 1, (W - ww) // sw + 1
    rows = []
    with no_grad():
        for i in range(OH):
            for j in range(OW):
                y = model(data[:, :, i * sh : i * sh + wh, j * sw : j * sw + ww])
                y = y.data if isinstance(y, Tensor) else y
                rows.append(y.reshape(shape[0], -1))
    xp = get_array_module(rows[0])
    scores = xp.stack(rows, axis=-1)  # (N, classes, OH*OW), row-major positions
    return Tensor(scores.reshape(shape[0], -1, OH, OW))
