"""atrous: convolutional networks in NumPy."""
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import config
from .random import manual_seed
from .tensor import Tensor, as_tensor, tensor

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "tensor",
    "as_tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "config",
    "manual_seed",
]
