"""Seeing inside a network: per-layer summary, MACs, receptive fields, parameter sharing.

>>> import atrous
>>> from atrous.analysis import summary, receptive_field
>>> print(summary(atrous.models.get_model("resnet18"), (3, 224, 224)))  # doctest: +SKIP
"""
from ..shape import conv_output_size
from .receptive_field import ReceptiveField, receptive_field
from .summary import Row, Summary, Totals, summary

__all__ = ["summary", "receptive_field", "conv_output_size", "Summary", "Row", "Totals",
           "ReceptiveField"]
