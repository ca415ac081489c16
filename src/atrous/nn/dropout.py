"""``Dropout``: inverted dropout in training, the identity in eval."""
from __future__ import annotations

from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zeroes each element with probability ``p`` during training and scales the survivors by
    1 / (1 - p), so eval needs no rescaling. Draws come from ``atrous.manual_seed``'s generator.

    Shape: any; the output has the input's shape.
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: dropout probability has to be between 0 and 1, but got {p!r}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        from .. import functional as F

        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
