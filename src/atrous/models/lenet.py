"""LeNet-5 (LeCun et al., 1998) for 32x32 single-channel images (or 28x28 padded by 2).

    C1 conv 5x5 -> 6@28x28, S2 pool 2 -> 6@14x14, C3 conv 5x5 -> 16@10x10, S4 pool -> 16@5x5,
    C5 400 -> 120, F6 120 -> 84, output 84 -> num_classes.            61,706 parameters.

The layers sit in two Sequentials, ``features`` (C1..S4) and ``classifier`` (Flatten, C5, F6,
output) so that ``classifier``'s Linear layers can later be turned into convolutions and the
network slid over larger images. C3 is fully connected to S2's six maps (the paper's sparse
connection table is a 1998 economy that modern implementations drop).
"""
from __future__ import annotations

from .. import nn

__all__ = ["LeNet5", "lenet5"]

_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh"}
_POOLS = {"max": "MaxPool2d", "avg": "AvgPool2d"}


class LeNet5(nn.Module):
    """See the module docstring.

    ``input_size`` 32 (the paper) or 28 (MNIST as stored; conv1 then pads by 2 so the maps
    have the same sizes). ``activation`` 'tanh' (the paper's squashing function) or 'relu';
    ``pool`` 'avg' (the paper's subsampling) or 'max'.

    Shape: (N, in_channels, input_size, input_size) -> (N, num_classes).
    """

    def __init__(self, num_classes=10, in_channels=1, input_size=32, activation="tanh",
                 pool="avg"):
        super().__init__()
        if input_size not in (28, 32):
            raise ValueError(f"lenet5: input_size must be 32 or 28, got {input_size}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"lenet5: activation must be 'tanh' or 'relu', got {activation!r}")
        if pool not in _POOLS:
            raise ValueError(f"lenet5: pool must be 'avg' or 'max', got {pool!r}")
        act, pool_layer = getattr(nn, _ACTIVATIONS[activation]), getattr(nn, _POOLS[pool])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=(32 - input_size) // 2),
            act(),
            pool_layer(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            pool_layer(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet5(num_classes=10, in_channels=1, input_size=32, activation="tanh", pool="avg"):
    """LeNet-5; ``activation='relu', pool='max'`` gives the common modern variant."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                  activation=activation, pool=pool)
