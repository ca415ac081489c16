"""``Parameter``: a Tensor that a Module registers as learnable when it is assigned to it."""
from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that requires a gradient by default and marks itself as a module weight.

    Assigning a Parameter to a Module attribute registers it, so it appears in
    ``parameters()`` and ``state_dict()``. The array is shared, not copied, as PyTorch's
    Parameter shares the tensor's storage.

    >>> p = Parameter(np.zeros(2))
    >>> p.requires_grad, p.dtype
    (True, dtype('float64'))
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty((0,), dtype=DEFAULT_DTYPE)
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
