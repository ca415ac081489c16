"""AlexNet: torchvision's single-tower variant, and the original 227x227 two-LRN network.

``alexnet`` has torchvision's layout and ``state_dict`` keys (``features.0``, ``features.3`` ...,
``classifier.1``, ``classifier.4``, ``classifier.6``) and 61,100,840 parameters at 1000
classes. ``alexnet_original`` follows Krizhevsky, Sutskever & Hinton (2012): 96/256/384/384/256
filters, local response normalisation after the first two convolutions, 227x227 inputs so
that conv1 (11x11, stride 4, no padding) gives 55x55x96.
"""
from __future__ import annotations

from .. import nn

__all__ = ["AlexNet", "AlexNetOriginal", "alexnet", "alexnet_original"]


def _fc_head(num_classes, dropout):
    """The three fully connected layers both variants end with: 6*6*256 -> 4096 -> 4096 ->
    num_classes, dropout before the first two."""
    return [
        nn.Dropout(p=dropout),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(),
        nn.Dropout(p=dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Linear(4096, num_classes),
    ]


class AlexNet(nn.Module):
    """torchvision's AlexNet (64/192/384/256/256 filters, no LRN).

    Shape: (N, 3, H, W) -> (N, num_classes) for H, W >= 63; 224x224 gives 6x6x256 features
    and the adaptive pool makes any larger size 6x6 too.
    Initialisation: PyTorch's layer defaults, as torchvision.
    """

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(*_fc_head(num_classes, dropout))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


class AlexNetOriginal(nn.Module):
    """The 2012 network: conv-ReLU-LRN-pool twice, three 3x3 convs, pool, three FC layers.

    ``groups=2`` reproduces the two-GPU split of conv2, conv4 and conv5 (each half of the
    filters sees only half of the previous layer's maps, as in Caffe's ``bvlc_alexnet``);
    the default ``groups=1`` is the dense version.

    LRN is ``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)``; note that PyTorch's (and so
    this library's) formula divides alpha by the window size, as Caffe does.

    Shape: (N, 3, 227, 227) -> conv1 (N, 96, 55, 55) -> pool1 27 -> conv2 27 -> pool2 13 ->
    conv3..5 13 -> pool5 (N, 256, 6, 6) -> (N, num_classes). There is no adaptive pool: the
    classifier needs exactly 6x6 maps, i.e. a 227x227 input (fully convolutional scoring
    of larger images is done by converting the classifier to convolutions).
    """

    def __init__(self, num_classes=1000, dropout=0.5, groups=1):
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"alexnet_original: groups must be 1 or 2, got {groups}")
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), *_fc_head(num_classes, dropout))

    def forward(self, x):
        return self.classifier(self.features(x))


def alexnet(num_classes=1000, dropout=0.5):
    """torchvision's AlexNet (61,100,840 parameters at 1000 classes)."""
    return AlexNet(num_classes=num_classes, dropout=dropout)


def alexnet_original(num_classes=1000, dropout=0.5, groups=1):
    """Krizhevsky et al.'s 227x227 AlexNet with two LRN layers (see :class:`AlexNetOriginal`)."""
    return AlexNetOriginal(num_classes=num_classes, dropout=dropout, groups=groups)
