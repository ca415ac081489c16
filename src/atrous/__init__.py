"""atrous: convolutional networks in NumPy."""
from . import allocator
from .allocator import keep_freed_memory
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import config
from .random import manual_seed
from .tensor import Tensor, as_tensor, tensor
from .threads import get_num_threads, set_num_threads

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
    "set_num_threads",
    "get_num_threads",
    "keep_freed_memory",
]

allocator._apply_default()  # freed memory reused, not page-faulted in again (atrous.allocator)

from .shape import conv_output_size  # noqa: E402  (pure arithmetic, no imports)

# Heavier tools load on first use, so `import atrous` stays light.
_LAZY = {"summary": ".analysis", "receptive_field": ".analysis"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ += ["summary", "receptive_field", "conv_output_size"]
