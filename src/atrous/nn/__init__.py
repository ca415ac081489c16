"""Layers with ``torch.nn``'s names, arguments, defaults and ``state_dict`` keys.

Modules own parameters and buffers and call ``atrous.functional`` (also reachable as
``atrous.nn.functional``) for the maths.
"""
from . import functional  # noqa: F401
from . import init  # noqa: F401
from .activation import ELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .module import LoadStateDictError, Module
from .normalization import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "Module",
    "Parameter",
    "LoadStateDictError",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Identity",
    "Conv2d",
    "ConvTranspose2d",
    "Linear",
    "Flatten",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LocalResponseNorm",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "functional",
    "init",
    "utils",
]

from . import utils  # noqa: E402  (fusions; imports only atrous modules)
