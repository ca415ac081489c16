"""Differentiable ops with ``torch.nn.functional``'s names and semantics.

Each accepts NumPy arrays or ``atrous.Tensor`` and returns a ``Tensor``. One file per family.
"""
from . import activation, conv, dilation, fused, loss, normalization, pooling, shape_ops
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dilation import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .shape_ops import *  # noqa: F401,F403

__all__ = [
    *activation.__all__,
    *conv.__all__,
    *dilation.__all__,
    *fused.__all__,
    *loss.__all__,
    *normalization.__all__,
    *pooling.__all__,
    *shape_ops.__all__,
]
