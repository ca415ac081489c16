"""Run a model once on a zero input and record every leaf-module call.

A leaf module is one without children (Conv2d, BatchNorm2d, ReLU, Linear, ...). A forward
hook on each records the call (dotted name, module, inputs, output) in call order; a module
called twice (a ResNet block's shared ReLU) gives two records. The pass runs in eval mode
(BatchNorm uses its running statistics and updates nothing; Dropout is the identity) with
the autograd graph recorded, since the receptive-field tracker walks it; every module's
training flag is restored afterwards.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..autograd import enable_grad
from ..tensor import Tensor

__all__ = ["Call", "parse_shape", "trace", "first_tensor"]


@dataclass
class Call:
    name: str
    module: object
    args: tuple
    output: object


def parse_shape(shape, op="summary"):
    """``(3, 224, 224)``, ``[3, 224, 224]`` or ``"3x224x224"`` -> a tuple of positive ints."""
    if isinstance(shape, str):
        parts = [p for p in re.split(r"[x,\s]+", shape.strip().lower()) if p]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"{op}: input_shape {shape!r} is not like '3x224x224'") from None
    elif isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    else:
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"{op}: input_shape must be a tuple of ints or a string like "
                            f"'3x224x224', got {shape!r}") from None
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
            raise TypeError(f"{op}: input_shape must hold ints, got {shape!r}")
        shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"{op}: input_shape must be non-empty with every size >= 1, got {shape}")
    return shape


def first_tensor(value):
    """The first Tensor in a module's output (a Tensor, or a tuple/list/dict holding some)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def _leaves(model):
    for name, module in model.named_modules():
        if next(iter(module.children()), None) is None:
            yield name or type(module).__name__, module


def _model_dtype(model):
    for p in model.parameters():
        if np.issubdtype(p.dtype, np.floating):
            return p.dtype
    return np.dtype(np.float32)


def trace(model, input_shape, dtype=None, op="summary"):
    """Forward a zero batch of one example of ``input_shape`` (no batch axis) through ``model``.

    ``dtype`` defaults to that of the model's first floating-point parameter (float32 for a
    model without parameters). Returns ``(x, output, calls)``: the input Tensor (shape ``(1, *input_shape)``), the
    model's output and the list of :class:`Call` records in call order.
    """
    shape = parse_shape(input_shape, op)
    x = Tensor(np.zeros((1,) + shape, dtype=dtype or _model_dtype(model)), requires_grad=True)
    calls = []

    def hook(name):
        def record(module, args, output):
            calls.append(Call(name, module, args, output))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in _leaves(model)]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with enable_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return x, out, calls
