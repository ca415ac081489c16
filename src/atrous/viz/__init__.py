"""Pictures (matplotlib, an optional dependency imported only when drawing)."""
from .training import plot_training_curves

__all__ = ["plot_training_curves"]
