"""Datasets, the batch loader and batch-wise transforms (all NumPy).

>>> from atrous.data import DataLoader, digits, transforms
>>> loader = DataLoader(digits("train"), batch_size=64, shuffle=True, seed=0)
>>> images, labels = next(iter(loader))        # (64, 1, 8, 8) float32, (64,) int64
"""
from . import transforms
from .cifar import cifar10
from .dataset import ArrayDataset, Dataset, Subset, TensorDataset, random_split
from .digit_scenes import digit_scenes
from .digits import digits
from .loader import DataLoader
from .mnist import mnist

__all__ = [
    "digit_scenes",
    "Dataset",
    "TensorDataset",
    "ArrayDataset",
    "Subset",
    "random_split",
    "DataLoader",
    "transforms",
    "digits",
    "mnist",
    "cifar10",
]
