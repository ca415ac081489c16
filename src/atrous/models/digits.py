"""A small CNN for scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

    conv3x3 1->32, BN, ReLU                       8x8
    conv3x3 32->64, BN, ReLU, max pool 2          8x8 -> 4x4
    conv3x3 64->128, BN, ReLU, max pool 2         4x4 -> 2x2
    Flatten, Linear 512->128, ReLU, Dropout, Linear 128->num_classes

160,074 parameters at 10 classes: small enough to train in well under a minute on two cores.
``features`` and ``classifier`` are Sequentials, so the classifier can be made convolutional.
"""
from __future__ import annotations

from .. import nn

__all__ = ["DigitsCNN", "digits_cnn"]


class DigitsCNN(nn.Module):
    """See the module docstring. Shape: (N, 1, 8, 8) -> (N, num_classes)."""

    def __init__(self, num_classes=10, dropout=0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 2 * 2, 128),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def digits_cnn(num_classes=10, dropout=0.25):
    """The digits network of the end-to-end demo (see the module docstring)."""
    return DigitsCNN(num_classes=num_classes, dropout=dropout)
