"""The Inception module of GoogLeNet v1 (Szegedy et al., 2014), with torchvision's names.

Four parallel branches see the same input and are concatenated along channels:

    branch1: 1x1                          -> ch1x1
    branch2: 1x1 reduce -> 3x3            -> ch3x3      (branch2.0, branch2.1)
    branch3: 1x1 reduce -> 5x5            -> ch5x5      (branch3.0, branch3.1)
    branch4: 3x3 max pool -> 1x1 project  -> pool_proj  (branch4.0 is the pool, branch4.1)

The 1x1 reductions are what make the block cheap: inception(3a) takes 192 channels at 28x28
and reduces to 96 before its 3x3 and to 16 before its 5x5, giving 64+128+32+32 = 256 channels.
Each convolution is a :class:`BasicConv2d` (conv without bias, BN with eps=1e-3, ReLU), as in
torchvision's GoogLeNet.

torchvision's GoogLeNet uses a 3x3 convolution in branch3 where the paper has 5x5 (a known
slip kept for its pretrained weights); pass ``branch3_kernel_size=3`` to load those weights.
"""
from __future__ import annotations

from .. import functional as F
from .. import nn

__all__ = ["BasicConv2d", "Inception", "inception_3a"]


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm2d(eps=0.001) -> ReLU; ``kwargs`` go to ``Conv2d``.

    Shape: as the convolution: (N, in_channels, H, W) -> (N, out_channels, H', W').
    """

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """GoogLeNet's Inception block (see the module docstring).

    Shape: (N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W): every
    branch keeps H and W (padding 1 for 3x3, 2 for 5x5, a stride-1 padded pool).

    >>> block = Inception(192, 64, 96, 128, 16, 32, 32)   # inception (3a)
    >>> block(np.zeros((1, 192, 28, 28), np.float32)).shape  # doctest: +SKIP
    (1, 256, 28, 28)
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv_block=None, branch3_kernel_size=5):
        super().__init__()
        if branch3_kernel_size not in (3, 5):
            raise ValueError(
                f"Inception: branch3_kernel_size must be 5 (the paper) or 3 (torchvision), "
                f"got {branch3_kernel_size}"
            )
        conv_block = conv_block or BasicConv2d
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1),
            conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=branch3_kernel_size,
                       padding=branch3_kernel_size // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x):
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return F.cat(outputs, 1)


def inception_3a(**kwargs):
    """GoogLeNet's first Inception block: 192 -> 64 + 128 + 32 + 32 = 256 channels (28x28)."""
    return Inception(192, 64, 96, 128, 16, 32, 32, **kwargs)
