"""Pictures (matplotlib, an optional dependency imported only when drawing)."""
from .conv import plot_feature_maps, plot_filters, plot_im2col, plot_receptive_field
from .scan import plot_scan
from .segmentation import overlay, plot_segmentation
from .training import plot_training_curves

__all__ = [
    "plot_training_curves",
    "plot_im2col",
    "plot_filters",
    "plot_feature_maps",
    "plot_receptive_field",
    "plot_scan",
    "overlay",
    "plot_segmentation",
]
