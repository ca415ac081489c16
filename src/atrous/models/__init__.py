"""The model zoo: classic CNN architectures with torchvision's module names.

    >>> from atrous import models
    >>> model = models.get_model("resnet18", num_classes=10)
    >>> sorted(models.list_models())[:3]
    ['alexnet', 'alexnet_original', 'digits_cnn']

``MODELS`` maps each zoo name to its constructor; every constructor takes keyword arguments
only (``num_classes`` and friends) and returns a freshly initialised ``atrous.nn.Module``.
"""
from __future__ import annotations

from .alexnet import AlexNet, AlexNetOriginal, alexnet, alexnet_original
from .digits import DigitsCNN, digits_cnn
from .inception import BasicConv2d, Inception, inception_3a
from .lenet import LeNet5, lenet5
from .resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    wide_resnet50_2,
)
from .vgg import VGG, vgg16, vgg16_bn
from .wide_resnet import WideBasic, WideResNet, wide_resnet


def _wrn_28_10(**kwargs):
    """WRN-28-10 for CIFAR (about 36.5M parameters)."""
    return wide_resnet(28, 10, **kwargs)


def _wrn_16_4(**kwargs):
    """WRN-16-4 for CIFAR (about 2.7M parameters)."""
    return wide_resnet(16, 4, **kwargs)


# Whole networks that map images to class scores (the Inception block alone is not one).
MODELS = {
    "alexnet": alexnet,
    "alexnet_original": alexnet_original,
    "digits_cnn": digits_cnn,
    "lenet5": lenet5,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "wide_resnet50_2": wide_resnet50_2,
    "wrn_16_4": _wrn_16_4,
    "wrn_28_10": _wrn_28_10,
}


def list_models():
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(MODELS)


def get_model(name, **kwargs):
    """Build the zoo model ``name`` with ``kwargs`` passed to its constructor.

    >>> get_model("digits_cnn", num_classes=10)  # doctest: +SKIP
    """
    try:
        constructor = MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"get_model: unknown model {name!r}; available: {', '.join(list_models())}"
        ) from None
    return constructor(**kwargs)


# Segmentation networks live in their own registry (MODELS holds classifiers only).
from .fcn8s import FCN8s, fcn8s, fcn8s_tiny  # noqa: E402
from .segmentation import (  # noqa: E402
    FCN,
    SEGMENTATION_MODELS,
    DeepLabV3,
    deeplabv3_resnet50,
    deeplabv3_tiny,
    fcn_resnet50,
    fcn_tiny,
    get_segmentation_model,
    list_segmentation_models,
)

__all__ = [
    "MODELS",
    "AlexNet",
    "AlexNetOriginal",
    "BasicBlock",
    "BasicConv2d",
    "Bottleneck",
    "DigitsCNN",
    "Inception",
    "LeNet5",
    "ResNet",
    "VGG",
    "WideBasic",
    "WideResNet",
    "alexnet",
    "alexnet_original",
    "digits_cnn",
    "get_model",
    "inception_3a",
    "lenet5",
    "list_models",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
    "vgg16_bn",
    "wide_resnet",
    "wide_resnet50_2",
    "FCN8s",
    "fcn8s",
    "fcn8s_tiny",
    "FCN",
    "SEGMENTATION_MODELS",
    "DeepLabV3",
    "deeplabv3_resnet50",
    "deeplabv3_tiny",
    "fcn_resnet50",
    "fcn_tiny",
    "get_segmentation_model",
    "list_segmentation_models",
]
